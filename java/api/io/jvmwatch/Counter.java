package io.jvmwatch;

/** A monotonic count. Lock-free; safe from any thread. */
public final class Counter {
    private final int base;

    Counter(int base) {
        this.base = base;
    }

    /** Adds one. */
    public void increment() {
        add(1);
    }

    /** Adds {@code n} (≥ 0). */
    public void add(long n) {
        if (base >= 0) {
            Jvmwatch.LONGS.getAndAdd(Jvmwatch.BUF, base + Jvmwatch.stripe(), n);
        }
    }
}
