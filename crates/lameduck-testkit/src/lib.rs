//! Test support shared by lameduck's integration tests.
