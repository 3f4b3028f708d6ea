//! Unit tests of the Responses conversions.
