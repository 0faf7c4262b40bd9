"""Runs the JobStore contract against every store kind in conftest.STORE_KINDS."""

from store_contract import StoreContract


class TestStoreContract(StoreContract):
    pass
