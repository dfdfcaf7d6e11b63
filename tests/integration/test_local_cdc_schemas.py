"""The real change-data-capture tests of test_local_cdc.py again, with the JsonConverter's default
`schemas.enable=true`: each value is `{"schema": ..., "payload": ...}`. A module of its own, so that the two
forms run on different pytest workers.

Left out here: the random burst with the Connect worker SIGKILLed (redelivery after a kill does not depend on the
converter, and `test_silver_current_state_equals_the_database_even_after_redelivery` redelivers in this form too),
and the orders' tier at order time (the orders topic is unwrapped by the same code as the customers topic, whose
tests run here).
"""

from __future__ import annotations

import pytest

from tests.integration.test_local_cdc import *  # noqa: F403  (the same tests, collected again in this module)
from tests.integration.test_local_cdc import cdc_environment

del test_a_random_burst_with_the_connector_killed_equals_what_the_database_committed  # noqa: F821
del test_orders_carry_their_customers_tier_at_order_time  # noqa: F821

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def cdc(tmp_path_factory, kafka):
    yield from cdc_environment(tmp_path_factory, value_schemas=True)
