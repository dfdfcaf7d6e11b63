"""The real change-data-capture tests of test_local_cdc.py again, with the JsonConverter's default
`schemas.enable=true`: each value is `{"schema": ..., "payload": ...}`. A module of its own, so that the two
forms run on different pytest workers.

Left out here: the random burst with the Connect worker SIGKILLed and the silver state after a redelivery
(redelivery does not depend on the converter: both run in the schemaless form), and the orders' tier at order
time (the orders topic is unwrapped by the same code as the customers topic). The pipeline meets the wrapped form
in `test_a_column_added_at_the_source_reaches_silver_without_a_failed_run`: the connector's own snapshot and
changes, and a wrapper whose schema changes with the table.
"""

from __future__ import annotations

import pytest

from tests.integration.test_local_cdc import *  # noqa: F403  (the same tests, collected again in this module)
from tests.integration.test_local_cdc import cdc_environment

del test_a_random_burst_with_the_connector_killed_equals_what_the_database_committed  # noqa: F821
del test_orders_carry_their_customers_tier_at_order_time  # noqa: F821
del test_silver_current_state_equals_the_database_even_after_redelivery  # noqa: F821

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cdc(tmp_path_factory, kafka):
    yield from cdc_environment(tmp_path_factory, value_schemas=True)
