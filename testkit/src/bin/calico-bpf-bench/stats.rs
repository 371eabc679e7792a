//! The few statistics the bench reports: milliseconds from durations, medians, and the
//! machine's load average (a loaded machine's times are not the product's). It never measures
//! the guard or prints.

use std::time::Duration;

/// The 1-minute load average; NaN when /proc/loadavg cannot be read (shown as such).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
