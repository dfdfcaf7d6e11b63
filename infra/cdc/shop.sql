-- The local shop database that `lakepipe cdc up` creates once: customers, and orders that reference them.
-- customers keeps full before-images of updates and deletes (REPLICA IDENTITY FULL); orders keeps the
-- default (the key only), so both shapes of Debezium's `before` reach the lake.
CREATE TABLE customers (
    customer_id text PRIMARY KEY,  -- the clickstream's user ids (u00001...)
    email       text NOT NULL,
    full_name   text NOT NULL,
    country     text NOT NULL,
    tier        text NOT NULL CHECK (tier IN ('bronze', 'silver', 'gold', 'platinum')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE customers REPLICA IDENTITY FULL;

CREATE TABLE orders (
    order_id    bigserial PRIMARY KEY,
    customer_id text NOT NULL REFERENCES customers ON DELETE CASCADE,
    amount      numeric(12, 2) NOT NULL CHECK (amount > 0),
    currency    text NOT NULL,
    ordered_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (customer_id, email, full_name, country, tier)
SELECT 'u' || lpad(i::text, 5, '0'), 'customer' || i || '@example.com', 'Customer ' || i,
       (ARRAY['US', 'DE', 'FR', 'GB', 'JP'])[1 + i % 5], (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + i % 4]
FROM generate_series(1, 20) AS i;
