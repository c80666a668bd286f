"""Every piece of test support code (see tests/README.md); test directories hold only tests."""
