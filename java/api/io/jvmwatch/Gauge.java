package io.jvmwatch;

/** A current value (queue depth). Last write wins. */
public final class Gauge {
    private final int base;

    Gauge(int base) {
        this.base = base;
    }

    /** Sets the value. */
    public void set(long value) {
        if (base >= 0) {
            Jvmwatch.LONGS.setRelease(Jvmwatch.BUF, base, value);
        }
    }
}
