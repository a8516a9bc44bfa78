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
        // This thread's stripe: its own sum, max and buckets, on cache lines no other stripe
        // uses (docs/ring-format.md, format version 3).
        int s = base + Jvmwatch.timerStripe();
        // No count word: the count is the sum of the buckets (one atomic fewer per record).
        Jvmwatch.LONGS.getAndAdd(Jvmwatch.BUF, s, ns);
        Jvmwatch.LONGS.getAndAdd(Jvmwatch.BUF, s + Jvmwatch.TIMER_BUCKETS + 8 * Jvmwatch.bucketOf(ns), 1L);
        // The max: a plain read of a line this thread just wrote; a CAS only for a new max.
        long max = (long) Jvmwatch.LONGS.getOpaque(Jvmwatch.BUF, s + 8);
        while (ns > max && !Jvmwatch.LONGS.weakCompareAndSet(Jvmwatch.BUF, s + 8, max, ns)) {
            max = (long) Jvmwatch.LONGS.getOpaque(Jvmwatch.BUF, s + 8);
        }
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
