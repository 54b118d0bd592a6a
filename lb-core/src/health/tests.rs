//! Checker-level tests live in balancer/health_tests.rs (they need a director).
