import pytest

from optimizer import builtin_models, load_chips


@pytest.fixture(scope="session")
def chips():
    return load_chips()


@pytest.fixture(scope="session")
def models():
    return builtin_models()
