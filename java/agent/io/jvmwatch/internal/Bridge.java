package io.jvmwatch.internal;

import java.nio.ByteBuffer;

/**
 * The natives of the jvmwatch agent. Defined by the agent in the bootstrap class loader at VM
 * init, with every method registered through JNI RegisterNatives (native/src/bridge.rs), so
 * any class loader finds it with {@code Class.forName("io.jvmwatch.internal.Bridge", true,
 * null)}. When the agent is not loaded the class does not exist, and the io.jvmwatch API runs
 * as a no-op.
 */
public final class Bridge {
    private Bridge() {}

    /** A direct buffer over the ring's metrics region; use only atomic VarHandle access. */
    public static native ByteBuffer metrics();

    /**
     * Registers (or finds) an instrument: kind 1 counter, 2 gauge, 0x103 timer (3 plus the
     * per-stripe layout bit of ring format 3; a plain 3 is refused). -1 if full or refused.
     */
    public static native int register(int kind, String name);

    /**
     * Interns a short string in the ring's string table; its id, or 65535 when full. For the
     * monitor's own names (collectors, causes, actions, pools); application events go through
     * {@link #event}, which bounds how much of the table they take.
     */
    public static native int intern(String s);

    /**
     * Writes an application event. The name takes a string-table entry while the
     * application's share (16 entries) lasts; after that it goes inline in the detail.
     */
    public static native void event(String name, String detail);

    /** Sets the application name in the ring header (first call wins). */
    public static native void app(String name);

    /** Writes a gc_cycle event. */
    public static native void gcCycle(int gcNumber, long durationUs, int collector, int cause, int action,
            boolean concurrent, long before, long after);

    /** Writes a gc_pool event. */
    public static native void gcPool(int gcNumber, int pool, long before, long after);

    /** Writes a deadlock event for one thread of a deadlock. */
    public static native void deadlock(int threads, int index, String text);

    /** Writes an agent_warning event. */
    public static native void warn(String text);

    /** Threads blocked on a monitor at the sampler's latest tick; -1 when not known yet. */
    public static native int blockedThreads();

    /** The agent's {@code gc=} option: 0 poll, 1 notify. */
    public static native int gcMode();

    /**
     * Waits until a stop-the-world collection finishes after the count {@code seen}, or
     * {@code timeoutMs} passes; returns the count of finished collections.
     */
    public static native int awaitGc(int seen, int timeoutMs);

    /**
     * The interned cause of stop-the-world collection number {@code finish} (as counted by
     * {@link #awaitGc}), from hsperfdata; -1 when unknown.
     */
    public static native int gcCause(int finish);

    /**
     * The VM's memory pools ({@code MemoryPoolMXBean}s) in the VM's own order, which {@link
     * #lastGc} uses (not the order of {@code ManagementFactory.getMemoryPoolMXBeans()}); null
     * when this VM does not offer it.
     */
    public static native Object[] memoryPools();

    /**
     * Reads collector {@code bean}'s last collection through the VM's management interface,
     * without the cost of {@code getLastGcInfo()} (native/src/jmm.rs): {@code out} gets its
     * id, start and end (ms since VM start), then the used bytes before and after it of each
     * pool in {@code heap} (indexes into {@link #memoryPools}). {@code before} and
     * {@code after} are {@code MemoryUsage[]}s as long as that list (overwritten). Returns 1
     * when read, 0 before the first collection, -1 when this VM does not offer it; throws what
     * the VM throws (an OutOfMemoryError building the MemoryUsage objects).
     */
    public static native int lastGc(Object bean, Object[] before, Object[] after, int[] heap, long[] out);

    /** Sets a gauge registered with {@link #register}. */
    public static native void gaugeSet(int index, long value);
}
