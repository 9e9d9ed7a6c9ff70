//! HMAC-SHA256 verification of a delivery body, as every signed source does before anything else:
//! `Key::verify` on 1 KiB and 16 KiB bodies (a typical dbt Cloud / Fivetran payload is 1–4 KiB).
//!
//! `cargo bench --bench signature`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use handoff::signature::Key;
use std::hint::black_box;

fn verify(c: &mut Criterion) {
    let key = Key::new(b"bench-secret-0123456789abcdef");
    let mut group = c.benchmark_group("Key::verify");
    for size in [1024usize, 16 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| b"{\"subject\":\"table\",\"status\":\"success\"}"[i % 38]).collect();
        let tag = key.sign(&[&body]);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{} KiB", size / 1024), |b| {
            b.iter(|| assert!(key.verify(&[black_box(&body)], black_box(&tag))))
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
