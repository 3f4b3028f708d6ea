//! Vertex codec and token tests.
