package io.jvmwatch;

import java.time.Duration;

/**
 * A latency histogram: count, sum, max and fixed log-linear buckets (4 per power of two of
 * nanoseconds, 1 µs .. ~275 s), from which the sidecar derives averages and percentiles over
 * any window. Lock-free; safe from any thread.
 */
public final class Timer {
    private final int base;

    Timer(int base) {
        this.base = base;
    }

    /** Records one duration in nanoseconds. */
    public void record(long nanos) {
        if (base < 0) {
            return;
        }
        long ns = Math.max(nanos, 0);
        int stripe = base + Jvmwatch.stripe();
        // No count word: the count is the sum of the buckets (one atomic fewer per record).
        Jvmwatch.LONGS.getAndAdd(Jvmwatch.BUF, stripe + 8, ns);
        long max = (long) Jvmwatch.LONGS.getOpaque(Jvmwatch.BUF, stripe + 16);
        while (ns > max && !Jvmwatch.LONGS.weakCompareAndSet(Jvmwatch.BUF, stripe + 16, max, ns)) {
            max = (long) Jvmwatch.LONGS.getOpaque(Jvmwatch.BUF, stripe + 16);
        }
        int bucket = base - Jvmwatch.STRIPES + Jvmwatch.BUCKETS + 8 * Jvmwatch.bucketOf(ns);
        Jvmwatch.LONGS.getAndAdd(Jvmwatch.BUF, bucket, 1L);
    }

    /** Records a duration. */
    public void record(Duration d) {
        record(d.toNanos());
    }

    /** Runs {@code r} and records how long it took. */
    public void time(Runnable r) {
        long t0 = System.nanoTime();
        try {
            r.run();
        } finally {
            record(System.nanoTime() - t0);
        }
    }
}
