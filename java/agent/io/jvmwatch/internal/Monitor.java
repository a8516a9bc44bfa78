package io.jvmwatch.internal;

import java.lang.management.BufferPoolMXBean;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryUsage;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;

import java.util.Set;
import javax.management.Notification;
import javax.management.NotificationEmitter;
import javax.management.openmbean.CompositeData;
import javax.management.openmbean.TabularData;

/**
 * The in-VM monitoring program, started by the agent at VM init on the daemon thread
 * "jvmwatch-monitor". It sees what JVMTI alone cannot and writes it through {@link Bridge}:
 *
 * <ul>
 *   <li>every collection (collector, cause, action, duration, heap before/after, per heap pool
 *       before/after) — concurrent cycles of ZGC/Shenandoah/G1 included, flagged as concurrent
 *       so their time never counts as pause time. With {@code gc=poll} (the default) a
 *       stop-the-world collector's collections are read here, after the agent's JVMTI
 *       GC-finish callback counted a collection: the collector's last collection through the
 *       VM's management interface ({@link Bridge#lastGc}; {@code getLastGcInfo()} where the VM
 *       does not offer it) plus the cause from hsperfdata: under half the CPU of a JMX
 *       notification, which makes the JVM build a CompositeData tree per collection.
 *       Concurrent and pause-only beans (no JVMTI finish event) keep notifications;
 *       {@code gc=notify} uses notifications for all;
 *   <li>deadlocks ({@code ThreadMXBean.findDeadlockedThreads}: it stops the JVM at a safepoint,
 *       so every 5 s while at least two threads are blocked on a monitor, else once a
 *       minute), once per deadlock, one event per thread with the lock owner;
 *   <li>class loading totals and direct/mapped buffer pools, as gauges.
 * </ul>
 *
 * Uses java.management (javax.management.openmbean reads the GC notification) and, for
 * {@code gc=poll}, {@code com.sun.management.GarbageCollectorMXBean} (jdk.management); without
 * that module every collector falls back to notifications. If it cannot start, the agent keeps its JVMTI data and writes a warning.
 */
public final class Monitor implements Runnable, javax.management.NotificationListener {
    private static final String GC_NOTIFICATION = "com.sun.management.gc.notification";

    private Monitor() {}

    /** Starts the monitor thread; called once by the agent. */
    public static void start() {
        // Made here, at VM init, so that registering it later never needs the heap. An
        // instance, not a method reference: that would spin a class here, and the JVM's first
        // one sets up java.lang.invoke, which held the application's main back by about 7 ms
        // (bench/README.md, "Issue 11, fourteenth round").
        listener = new Monitor();
        oomAtStart = "monitor: OutOfMemoryError at start; retrying";
        oomInLoop = "monitor: OutOfMemoryError; retrying";
        stoppedByOom = "monitor stopped: OutOfMemoryError";
        stopped = "monitor stopped";
        Thread t = new Thread(new Monitor(), "jvmwatch-monitor");
        t.setDaemon(true);
        t.setPriority(Thread.MIN_PRIORITY);
        t.start();
    }

    @Override
    public void run() {
        try {
            String app = System.getProperty("jvmwatch.app");
            if (app != null && !app.isEmpty()) {
                Bridge.app(app);
            }
            boolean polling = false;
            boolean listening = false;
            for (boolean warned = false; !ending;) {
                // A full heap (the application's OutOfMemoryError) while the monitor starts is
                // waited out, not the end of the monitor: JMX takes a few hundred ms to set up,
                // and a JVM may fill its heap by then. (The loop handles it afterwards.)
                try {
                    if (!listening) {
                        polling = listenToGc();
                        listening = true;
                    }
                    loop(polling);
                    return; // VM death
                } catch (OutOfMemoryError e) {
                    if (!warned) {
                        warned = true;
                        Bridge.warn(oomAtStart);
                    }
                    Thread.sleep(100);
                }
            }
        } catch (Throwable t) {
            // The heap may still be full: the warning must not need an allocation to be told.
            String why = stoppedByOom;
            if (!(t instanceof OutOfMemoryError)) {
                try {
                    why = stopped + ": " + t.getClass().getSimpleName();
                } catch (Throwable e) {
                    why = stopped;
                }
            }
            Bridge.warn(why);
        }
    }

    private static javax.management.NotificationListener listener;
    // The warnings told while the heap may be full. A string literal's String is made at the
    // literal's first use, which would need the heap: these are made at VM init, in start().
    private static String oomAtStart;
    private static String oomInLoop;
    private static String stoppedByOom;
    private static String stopped;

    /** The beans whose notifications the monitor listens to (room for all, so adding never allocates). */
    private static final List<Object> LISTENING = new ArrayList<>(32);

    // The stop-the-world collectors read by polling (gc=poll), as parallel arrays: the agent
    // defines this class alone from its bytes, so it has no nested classes.
    private static GarbageCollectorMXBean[] polled = new GarbageCollectorMXBean[0];
    private static int[] polledName;
    private static int[] polledAction;
    private static long[] polledCount;
    private static long[] polledLastId;
    private static boolean[] polledFresh;
    private static long[] polledDelta;

    private static synchronized void poll(List<GarbageCollectorMXBean> beans) {
        heapPoolsIndexed();
        int n = beans.size();
        polled = beans.toArray(new GarbageCollectorMXBean[n]);
        polledName = new int[n];
        polledAction = new int[n];
        polledCount = new long[n];
        polledLastId = new long[n];
        polledFresh = new boolean[n];
        polledDelta = new long[n];
        polledStat = new long[n][3 + 2 * heapIdx.length];
        processed = Bridge.awaitGc(-1, 0);
        for (int i = 0; i < n; i++) {
            String name = polled[i].getName();
            polledName[i] = Bridge.intern(name);
            // HotSpot's own action strings: young-generation managers end "minor" collections.
            boolean young = name.contains("Young") || name.contains("Scavenge") || name.equals("Copy")
                    || name.equals("ParNew");
            polledAction[i] = Bridge.intern(young ? "end of minor GC" : "end of major GC");
            polledCount[i] = polled[i].getCollectionCount();
            polledLastId[i] = -1;
            // Links the read (and, where it falls back, loads the GcInfo classes) now, not at
            // the first (or the last) collection.
            readLast(i);
        }
    }

    // The heap pools, in the VM's order (Bridge.memoryPools; getMemoryPoolMXBeans(), in another
    // order, where the VM does not offer it): their indexes in that list, names and interned
    // ids; and the MemoryUsage[] pair that Bridge.lastGc fills.
    private static int[] heapIdx;
    private static String[] heapName;
    private static int[] heapId;
    private static MemoryUsage[] usageBefore;
    private static MemoryUsage[] usageAfter;
    /** Per polled collector, its last collection as read: [id, start ms, end ms, before/after per heap pool]. */
    private static long[][] polledStat;
    /** Whether Bridge.lastGc works on this VM; false after its first -1, then getLastGcInfo() is used. */
    private static boolean viaJmm = true;

    private static void heapPoolsIndexed() {
        Object[] vmPools = Bridge.memoryPools();
        List<MemoryPoolMXBean> pools = new ArrayList<>();
        if (vmPools == null) {
            viaJmm = false;
            pools = ManagementFactory.getMemoryPoolMXBeans();
        } else {
            for (Object p : vmPools) {
                pools.add((MemoryPoolMXBean) p);
            }
        }
        List<Integer> heap = new ArrayList<>();
        for (int i = 0; i < pools.size(); i++) {
            if (pools.get(i).getType() == java.lang.management.MemoryType.HEAP) {
                heap.add(i);
            }
        }
        heapIdx = new int[heap.size()];
        heapName = new String[heap.size()];
        heapId = new int[heap.size()];
        for (int k = 0; k < heapIdx.length; k++) {
            heapIdx[k] = heap.get(k);
            heapName[k] = pools.get(heapIdx[k]).getName();
            heapId[k] = poolId(heapName[k]);
        }
        usageBefore = new MemoryUsage[pools.size()];
        usageAfter = new MemoryUsage[pools.size()];
    }

    /**
     * Reads polled collector {@code i}'s last collection into {@code polledStat[i]}; false when
     * it has not collected yet. Through {@link Bridge#lastGc} where the VM offers it (no GcInfo, no
     * maps: the monitor thread's CPU per collection fell by 38 % at 55 collections a second),
     * else {@code getLastGcInfo()}.
     */
    private static boolean readLast(int i) {
        long[] s = polledStat[i];
        if (viaJmm) {
            int read;
            try {
                read = Bridge.lastGc(polled[i], usageBefore, usageAfter, heapIdx, s);
            } catch (OutOfMemoryError e) {
                throw e; // the loop skips this poll; the next one tries again
            } catch (RuntimeException e) {
                read = -1; // the VM refused the call: getLastGcInfo() from now on
            }
            if (read >= 0) {
                return read == 1;
            }
            viaJmm = false;
        }
        com.sun.management.GcInfo gi = ((com.sun.management.GarbageCollectorMXBean) polled[i]).getLastGcInfo();
        if (gi == null) {
            return false;
        }
        s[0] = gi.getId();
        s[1] = gi.getStartTime();
        s[2] = gi.getEndTime();
        Map<String, MemoryUsage> before = gi.getMemoryUsageBeforeGc();
        Map<String, MemoryUsage> after = gi.getMemoryUsageAfterGc();
        for (int k = 0; k < heapName.length; k++) {
            MemoryUsage b = before.get(heapName[k]);
            MemoryUsage a = after.get(heapName[k]);
            s[3 + 2 * k] = b == null ? -1 : b.getUsed();
            s[4 + 2 * k] = a == null ? -1 : a.getUsed();
        }
        return true;
    }

    /** Registers notification listeners; returns the collectors to poll instead. */
    private static boolean listenToGc() {
        boolean poll = Bridge.gcMode() == 0;
        List<GarbageCollectorMXBean> toPoll = new ArrayList<>();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            if (poll && stopTheWorld(gc)) {
                toPoll.add(gc);
                continue;
            }
            // Once per bean, also when a start is retried after an OutOfMemoryError.
            if (gc instanceof NotificationEmitter && !LISTENING.contains(gc)) {
                ((NotificationEmitter) gc).addNotificationListener(listener, null, null);
                LISTENING.add(gc);
            }
        }
        poll(toPoll);
        return !toPoll.isEmpty();
    }

    /**
     * Whether a collector is polled: a stop-the-world one whose bean has getLastGcInfo().
     * Concurrent cycles and pause-only beans (ZGC, Shenandoah) have no JVMTI finish event to
     * wake the poll: they keep notifications, which are rare for them.
     */
    private static boolean stopTheWorld(GarbageCollectorMXBean gc) {
        String name = gc.getName();
        return !concurrent(name, "") && !name.endsWith("Pauses") && extension(gc);
    }

    /** Whether the bean is a com.sun.management.GarbageCollectorMXBean (jdk.management). */
    private static boolean extension(GarbageCollectorMXBean gc) {
        try {
            return gc instanceof com.sun.management.GarbageCollectorMXBean;
        } catch (Throwable t) {
            return false;
        }
    }

    private static boolean concurrent(String name, String action) {
        // JDK 11-16 ZGC has one bean, "ZGC", for its whole (mostly concurrent) cycles; from
        // JDK 17 on they are "ZGC Cycles" and "ZGC Pauses". Its pauses come from JVMTI.
        return name.contains("Cycles") || name.contains("Concurrent") || action.contains("concurrent")
                || name.equals("ZGC");
    }

    /** Collections whose details were not read (the next one finished first). */
    private static long coalesced;
    private static int coalescedGauge = -2;

    /** The stop-the-world finish count covered by the collections written so far. */
    private static int processed;

    /**
     * False after a read during which a collection finished: that collection may be counted in
     * {@link #processed} but not yet in the collectors' counts, so the next read's finishes
     * and collections need not match even when they add up.
     */
    private static boolean synced = true;

    /**
     * Set at VM death (by {@link #flush}): the monitor thread ends at its next turn, rather than
     * wait in native code again, which the JVM's exit would wait for (the agent's
     * {@code gcwake::stop} ends the wait it is in).
     */
    private static volatile boolean ending;

    /**
     * Called by the agent at VM death: writes what finished since the last poll. A JVM that
     * ends before the monitor has set up and before its first stop-the-world collection has
     * nothing to tell: it returns at once, without setting up JMX or waiting for the monitor
     * thread's start to do so (tens of ms, which held a short-lived JVM's exit back by about
     * 25 ms). Once set up, the monitor reads as before, also where the JVM refused the agent
     * the GC events (attached), which leaves the agent's count at 0.
     */
    public static void flush() {
        ending = true;
        // Unlocked read: a stale null only skips a read that had no collection to tell.
        if (polledName == null && Bridge.awaitGc(-1, 0) == 0) {
            return;
        }
        flushCollections();
    }

    private static synchronized void flushCollections() {
        try {
            if (polledName == null && Bridge.gcMode() == 0) {
                // The JVM dies before the monitor got going: tell each collector's last
                // collection at least.
                List<GarbageCollectorMXBean> stw = new ArrayList<>();
                for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
                    if (stopTheWorld(gc)) {
                        stw.add(gc);
                    }
                }
                poll(stw);
                processed = 0;
                synced = true;
                Arrays.fill(polledCount, 0);
            }
            if (polled.length > 0) {
                pollGc(Bridge.awaitGc(-1, 0));
            }
        } catch (Throwable t) {
            // The VM is going away; nothing to tell.
        }
    }

    /**
     * Writes the latest collection of every polled collector whose count moved. {@code now} is
     * the agent's count of finished stop-the-world collections; the cause of finish number f
     * is {@code Bridge.gcCause(f)}. When the collectors' counts account for exactly the
     * finishes since the last poll (and nothing finished during the last read), the newest
     * collection is finish {@code after}, and the next collector's last one is
     * {@code after - 1} when the newest collector had one collection (with more, it is
     * unknown: it may have come between them); when one pause finished, every collection read
     * belongs to it. Otherwise only the newest collection's cause is known (when none finished
     * while we read, nor during the read before); the others are unknown rather than guessed,
     * as are collections that ended in the same millisecond in different pauses.
     */
    private static synchronized void pollGc(int now) {
        int n = polled.length;
        int before = Bridge.awaitGc(now, 0);
        // Scratch arrays, kept: a new array would be the thread's first allocation after the
        // collection, which takes a new TLAB (a slow path) every time.
        boolean[] fresh = polledFresh;
        long[] deltas = polledDelta;
        Arrays.fill(fresh, false);
        Arrays.fill(deltas, 0);
        long sum = 0;
        for (int i = 0; i < n; i++) {
            long c = polled[i].getCollectionCount();
            if (c == polledCount[i]) {
                continue;
            }
            deltas[i] = c - polledCount[i];
            sum += deltas[i];
            polledCount[i] = c;
            if (readLast(i) && polledStat[i][0] != polledLastId[i]) {
                polledLastId[i] = polledStat[i][0];
                fresh[i] = true;
                if (deltas[i] > 1) {
                    coalesced += deltas[i] - 1;
                }
            }
        }
        if (sum == 0) {
            return;
        }
        int after = Bridge.awaitGc(now, 0);
        int finishes = after - processed;
        processed = after;
        boolean wasSynced = synced;
        synced = before == after;
        // A collector whose count moved but whose last collection was not read may hold the
        // newest collection: then no finish number is known.
        boolean allRead = true;
        for (int i = 0; i < n; i++) {
            allRead &= deltas[i] == 0 || fresh[i];
        }
        // Several collections in one pause (Parallel and Serial scavenge before a full
        // collection; G1 upgrades a young pause to a full one) share the pause's cause.
        boolean onePause = finishes == 1;
        boolean consistent = wasSynced && allRead && (finishes == sum || onePause);
        // No collection finished while we read: the newest collection read is the newest
        // finish, whatever happened before it. The newest finish may also be a pause no polled
        // collector counts (G1's remark and cleanup, VM_G1PauseConcurrent): those set no cause,
        // so the callback kept hsperfdata's last cause for them, which is the cause of the
        // newest collection that set one, a polled one: the collection read here. Not after a
        // read during which a collection finished: that read may have taken one collector's
        // count before a pause and another's after the next one (seen with the monitor thread
        // descheduled between the two, on a loaded machine), and told the newer collection;
        // the older one, read now, is then not the newest finish.
        boolean newestKnown = wasSynced && before == after && allRead;
        int finish = after;
        // Counting down stays exact past a collector with one collection since the last poll;
        // past one with more, the next collector's last collection may have come between
        // them (young, full, young, young), so its finish is not known.
        boolean exact = consistent;
        // Newest first: finish numbers count down from `after`.
        for (int left = n; left > 0; left--) {
            int newest = -1;
            for (int i = 0; i < n; i++) {
                if (deltas[i] > 0 && (newest < 0 || endTime(fresh, i) > endTime(fresh, newest))) {
                    newest = i;
                }
            }
            if (newest < 0) {
                break;
            }
            // Two collections that ended in the same millisecond: which came last is not known
            // (unless they shared one pause).
            boolean tied = false;
            for (int i = 0; i < n; i++) {
                tied |= i != newest && deltas[i] > 0 && endTime(fresh, i) == endTime(fresh, newest);
            }
            if (tied && !onePause) {
                exact = false;
                newestKnown = false;
            }
            if (fresh[newest]) {
                boolean known = exact || (newestKnown && finish == after);
                write(newest, known ? Bridge.gcCause(finish) : -1);
            }
            if (!onePause) {
                finish -= (int) deltas[newest];
                exact &= deltas[newest] == 1;
            }
            deltas[newest] = 0;
        }
        if (coalesced > 0) {
            if (coalescedGauge == -2) {
                coalescedGauge = Bridge.register(1, "jvm.gc.coalesced");
            }
            if (coalescedGauge >= 0) {
                Bridge.gaugeSet(coalescedGauge, coalesced);
            }
        }
    }

    private static long endTime(boolean[] fresh, int collector) {
        return fresh[collector] ? polledStat[collector][2] : Long.MIN_VALUE;
    }

    /** Writes a polled collector's last collection: a gc_cycle event and a gc_pool event per heap pool. */
    private static void write(int collector, int cause) {
        long[] s = polledStat[collector];
        long heapBefore = 0;
        long heapAfter = 0;
        for (int k = 0; k < heapIdx.length; k++) {
            long b = s[3 + 2 * k];
            if (b >= 0) {
                heapBefore += b;
                heapAfter += s[4 + 2 * k] < 0 ? b : s[4 + 2 * k];
            }
        }
        int id = (int) s[0];
        Bridge.gcCycle(id, (s[2] - s[1]) * 1000, polledName[collector], cause, polledAction[collector], false,
                heapBefore, heapAfter);
        for (int k = 0; k < heapIdx.length; k++) {
            long b = s[3 + 2 * k];
            if (b >= 0) {
                Bridge.gcPool(id, heapId[k], b, s[4 + 2 * k] < 0 ? b : s[4 + 2 * k]);
            }
        }
    }

    private static final Map<String, Integer> POOL_IDS = new HashMap<>();

    private static synchronized int poolId(String pool) {
        return POOL_IDS.computeIfAbsent(pool, Bridge::intern);
    }

    private static long used(Object usage) {
        return usage instanceof CompositeData ? ((Number) ((CompositeData) usage).get("used")).longValue() : 0;
    }

    /** A collector's notification (the collectors that are not polled, or all with gc=notify). */
    @Override
    public void handleNotification(Notification n, Object handback) {
        onGc(n, handback);
    }

    private static void onGc(Notification n, Object handback) {
        try {
            if (!GC_NOTIFICATION.equals(n.getType()) || !(n.getUserData() instanceof CompositeData)) {
                return;
            }
            CompositeData cd = (CompositeData) n.getUserData();
            String name = (String) cd.get("gcName");
            String action = (String) cd.get("gcAction");
            String cause = (String) cd.get("gcCause");
            CompositeData info = (CompositeData) cd.get("gcInfo");
            int id = (int) ((Number) info.get("id")).longValue();
            long durationMs = ((Number) info.get("duration")).longValue();
            TabularData before = (TabularData) info.get("memoryUsageBeforeGc");
            TabularData after = (TabularData) info.get("memoryUsageAfterGc");
            Set<String> heapPools = heapPools();
            long heapBefore = 0;
            long heapAfter = 0;
            List<Object[]> pools = new ArrayList<>();
            for (Object row : before.values()) {
                CompositeData r = (CompositeData) row;
                String pool = (String) r.get("key");
                if (!heapPools.contains(pool)) {
                    continue;
                }
                long b = used(r.get("value"));
                CompositeData ar = after.get(new Object[] {pool});
                long a = ar == null ? b : used(ar.get("value"));
                heapBefore += b;
                heapAfter += a;
                pools.add(new Object[] {pool, b, a});
            }
            boolean concurrent = concurrent(name, action);
            Bridge.gcCycle(id, durationMs * 1000, Bridge.intern(name), Bridge.intern(cause),
                    Bridge.intern(action), concurrent, heapBefore, heapAfter);
            for (Object[] p : pools) {
                Bridge.gcPool(id, Bridge.intern((String) p[0]), (Long) p[1], (Long) p[2]);
            }
        } catch (Throwable t) {
            Bridge.warn("gc notification: " + t.getClass().getSimpleName());
        }
    }

    private static Set<String> heapPoolNames;

    private static synchronized Set<String> heapPools() {
        if (heapPoolNames == null) {
            Set<String> s = new HashSet<>();
            ManagementFactory.getMemoryPoolMXBeans().forEach(p -> {
                if (p.getType() == java.lang.management.MemoryType.HEAP) {
                    s.add(p.getName());
                }
            });
            heapPoolNames = s;
        }
        return heapPoolNames;
    }

    private static void loop(boolean polling) throws InterruptedException {
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        ClassLoadingMXBean classes = ManagementFactory.getClassLoadingMXBean();
        List<BufferPoolMXBean> buffers = ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class);
        // Monotonic JVM totals, registered as counters (kind 1) and mirrored with gaugeSet.
        int loaded = Bridge.register(1, "jvm.classes.loaded");
        int unloaded = Bridge.register(1, "jvm.classes.unloaded");
        int[][] buf = new int[buffers.size()][];
        for (int i = 0; i < buf.length; i++) {
            String n = buffers.get(i).getName();
            buf[i] = new int[] {Bridge.register(2, "jvm.buffer_pool.used_bytes{pool=" + n + "}"),
                Bridge.register(2, "jvm.buffer_pool.used_buffers{pool=" + n + "}")};
        }
        Set<Long> reported = new HashSet<>();
        boolean warnedOom = false;
        int seen = processed;
        long nextTick = System.nanoTime();
        for (long tick = 0; !ending;) {
            // An OutOfMemoryError (the application filled the heap) skips this tick or poll,
            // it does not end the monitor: the next one tries again.
            try {
                if (System.nanoTime() - nextTick >= 0) {
                    tick(threads, classes, buffers, loaded, unloaded, buf, reported, tick++);
                    nextTick = System.nanoTime() + 1_000_000_000L;
                    if (polling) {
                        // Catches collections that post no JVMTI event. Reads what finished
                        // so far, so the wait below does not return at once to read it again.
                        seen = Bridge.awaitGc(seen, 0);
                        pollGc(seen);
                    }
                }
                // Rounded up: a wait that ends just short of the tick would be one more wake-up.
                int waitMs = (int) Math.max(1, (nextTick - System.nanoTime() + 999_999) / 1_000_000);
                if (!polling) {
                    Thread.sleep(waitMs);
                } else {
                    // Woken by the agent's GC-finish callback, or at the next tick.
                    seen = awaitAndPoll(seen, waitMs);
                }
            } catch (OutOfMemoryError e) {
                if (!warnedOom) {
                    warnedOom = true;
                    Bridge.warn(oomInLoop);
                }
            }
        }
    }

    /**
     * One wait for a collection, and its read when the agent counted one (most naps end with
     * none: then no collector is asked for its count). A method of its own so that the JIT
     * compiles it: the loop around it is entered once and stays interpreted.
     */
    private static int awaitAndPoll(int seen, int waitMs) {
        int now = Bridge.awaitGc(seen, waitMs);
        if (now != seen) {
            pollGc(now);
        }
        return now;
    }

    private static void tick(ThreadMXBean threads, ClassLoadingMXBean classes, List<BufferPoolMXBean> buffers,
            int loaded, int unloaded, int[][] buf, Set<Long> reported, long tick) {
        // findDeadlockedThreads is a safepoint operation (all threads stopped). A monitor
        // deadlock needs two threads BLOCKED, which the sampler counts every tick: check every
        // 5 s while there are, else once a minute (deadlocks on java.util.concurrent locks
        // show as parked, WAITING threads, so they are still found, within a minute).
        int blocked = Bridge.blockedThreads();
        boolean due = tick % 5 == 0 && (blocked < 0 || blocked >= 2) || tick % 60 == 0;
        long[] dead = due ? threads.findDeadlockedThreads() : null;
        if (dead != null) {
            Arrays.sort(dead);
            ThreadInfo[] infos = threads.getThreadInfo(dead);
            boolean fresh = false;
            for (long id : dead) {
                fresh |= reported.add(id);
            }
            if (fresh) {
                for (int i = 0; i < infos.length; i++) {
                    ThreadInfo ti = infos[i];
                    if (ti != null) {
                        Bridge.deadlock(infos.length, i, ti.getThreadName() + " > " + ti.getLockOwnerName());
                    }
                }
            }
        }
        if (loaded >= 0) {
            Bridge.gaugeSet(loaded, classes.getTotalLoadedClassCount());
        }
        if (unloaded >= 0) {
            Bridge.gaugeSet(unloaded, classes.getUnloadedClassCount());
        }
        for (int i = 0; i < buf.length; i++) {
            if (buf[i][0] >= 0) {
                Bridge.gaugeSet(buf[i][0], buffers.get(i).getMemoryUsed());
            }
            if (buf[i][1] >= 0) {
                Bridge.gaugeSet(buf[i][1], buffers.get(i).getCount());
            }
        }
    }

}
