//! xchg-tests: shared fixtures for the integration suites in `tests/tests/`.
