//! Unit tests of the Messages conversions.
