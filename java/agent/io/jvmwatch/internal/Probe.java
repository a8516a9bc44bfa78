package io.jvmwatch.internal;

import java.lang.management.ClassLoadingMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.lang.management.MemoryUsage;
import java.lang.management.ThreadMXBean;
import java.util.List;

/**
 * Read by the jvmwatch agent's sampler thread through JNI; defined by the agent at VM init
 * from class bytes embedded in libjvmwatch.so. Never called by application code.
 *
 * <p>{@link #sample()} returns one long[] whose layout the agent's sampler decodes
 * (native/src/sampler.rs): the {@code FIXED} header values, then {@code POOL_FIELDS} values
 * per pool in {@link #poolNames()} order, then {@code GC_FIELDS} per collector in
 * {@link #collectorNames()} order. Unknown values are -1.
 */
public final class Probe {
    static final int FIXED = 8;
    static final int POOL_FIELDS = 5;
    static final int GC_FIELDS = 2;

    private static final MemoryMXBean MEMORY = ManagementFactory.getMemoryMXBean();
    private static final List<MemoryPoolMXBean> POOLS = ManagementFactory.getMemoryPoolMXBeans();
    private static final List<GarbageCollectorMXBean> GCS =
            ManagementFactory.getGarbageCollectorMXBeans();
    private static final ClassLoadingMXBean CLASSES = ManagementFactory.getClassLoadingMXBean();
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    private Probe() {}

    public static String[] poolNames() {
        String[] out = new String[POOLS.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = POOLS.get(i).getName();
        }
        return out;
    }

    public static String[] collectorNames() {
        String[] out = new String[GCS.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = GCS.get(i).getName();
        }
        return out;
    }

    /**
     * The pools' MXBeans in {@link #poolNames()} order. Where the VM's management interface
     * (JMM) is one the agent knows, the sampler reads these through it directly instead of
     * calling {@link #sample()} (native/src/jmm.rs): the same VM functions, without the Java
     * frames. They are the VM's own objects, which JMM finds the pools by.
     */
    public static Object[] poolBeans() {
        return POOLS.toArray();
    }

    /** Whether each pool in {@link #poolNames()} order is a heap pool. */
    public static boolean[] poolIsHeap() {
        boolean[] out = new boolean[POOLS.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = POOLS.get(i).getType() == MemoryType.HEAP;
        }
        return out;
    }

    /** The collectors' MXBeans in {@link #collectorNames()} order (see {@link #poolBeans()}). */
    public static Object[] collectorBeans() {
        return GCS.toArray();
    }

    /**
     * Pool usage after the latest collection, per pool (-1: unknown), and the collection count
     * it was read at. {@code getCollectionUsage()} only changes when a collection ends, so it
     * is read again only when the collectors' total count moved (saves one MemoryUsage object,
     * built by a JNI up-call, per pool per sample). Only the sampler thread calls sample().
     */
    private static final long[] AFTER_GC = new long[POOLS.size()];
    private static long afterGcAt = -1;

    public static long[] sample() {
        long[] out = new long[FIXED + POOL_FIELDS * POOLS.size() + GC_FIELDS * GCS.size()];
        int at = FIXED + POOL_FIELDS * POOLS.size();
        long collections = 0;
        for (GarbageCollectorMXBean gc : GCS) {
            out[at] = gc.getCollectionCount();
            out[at + 1] = gc.getCollectionTime();
            collections += Math.max(0, out[at]);
            at += GC_FIELDS;
        }
        boolean readAfterGc = collections != afterGcAt;
        afterGcAt = collections;
        MemoryUsage heap = MEMORY.getHeapMemoryUsage();
        out[0] = heap.getUsed();
        out[1] = heap.getCommitted();
        out[2] = heap.getMax();
        // Non-heap used and committed are the sums over the non-heap pools: what
        // MemoryMXBean.getNonHeapMemoryUsage() adds up itself (jmm_GetMemoryUsage), without
        // walking the pools a second time.
        long nonHeapUsed = 0;
        long nonHeapCommitted = 0;
        out[5] = CLASSES.getLoadedClassCount();
        out[6] = THREADS.getDaemonThreadCount();
        out[7] = THREADS.getThreadCount();
        at = FIXED;
        for (int i = 0; i < AFTER_GC.length; i++) {
            MemoryPoolMXBean pool = POOLS.get(i);
            MemoryUsage u = pool.getUsage();
            boolean isHeap = pool.getType() == MemoryType.HEAP;
            if (readAfterGc) {
                MemoryUsage afterGc = pool.getCollectionUsage();
                AFTER_GC[i] = afterGc == null ? -1 : afterGc.getUsed();
            }
            out[at] = isHeap ? 1 : 0;
            out[at + 1] = u == null ? -1 : u.getUsed();
            out[at + 2] = u == null ? -1 : u.getCommitted();
            out[at + 3] = u == null ? -1 : u.getMax();
            out[at + 4] = AFTER_GC[i];
            if (!isHeap && u != null) {
                nonHeapUsed += u.getUsed();
                nonHeapCommitted += u.getCommitted();
            }
            at += POOL_FIELDS;
        }
        out[3] = nonHeapUsed;
        out[4] = nonHeapCommitted;
        return out;
    }
}
