//! The sections of `cargo xtask bench` that run alone (`--only NAME`), each writing its part
//! of the report; the table that names them is `SECTIONS` in `bench/mod.rs`.

pub(crate) mod compare;
pub(crate) mod instances;
pub(crate) mod logins;
pub(crate) mod mixes;
pub(crate) mod partitions;
pub(crate) mod rates;
pub(crate) mod reports;
pub(crate) mod scale;
pub(crate) mod steps;
pub(crate) mod trace;

pub(crate) use compare::*;
pub(crate) use instances::*;
pub(crate) use logins::*;
pub(crate) use partitions::*;
pub(crate) use rates::*;
pub(crate) use reports::*;
pub(crate) use scale::*;
pub(crate) use steps::*;
pub(crate) use trace::*;
