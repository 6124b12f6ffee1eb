//! Exact amount parsing and formatting: every money callback does both once.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use settlement::money::{format_minor, parse_minor};

fn amounts(c: &mut Criterion) {
    c.bench_function("parse_minor 1234.56 EUR", |b| {
        b.iter(|| parse_minor(black_box("1234.56"), 2))
    });
    c.bench_function("format_minor 123456 EUR", |b| {
        b.iter(|| format_minor(black_box(123_456), 2))
    });
}

criterion_group!(benches, amounts);
criterion_main!(benches);
