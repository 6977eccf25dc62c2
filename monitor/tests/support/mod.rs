//! Real parts for integration tests: a Garage S3 server on loopback, the demo
//! jemalloc target, a Slack stand-in, a pprof decoder, and the monitor binary
//! itself. Each test binary includes this with `mod support;` and uses what it
//! needs.
#![allow(dead_code)]

pub mod demo;
pub mod garage;
pub mod monitor;
pub mod pprof;
pub mod rig;
pub mod slack;
