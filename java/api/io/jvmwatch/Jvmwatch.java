package io.jvmwatch;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Application metrics into the jvmwatch ring file — the same crash-surviving file the agent
 * writes GC, heap and thread status into.
 *
 * <pre>{@code
 * Counter requests = Jvmwatch.counter("http.requests", "route", "/orders");
 * Timer latency = Jvmwatch.timer("http.latency", "route", "/orders");
 * Gauge queue = Jvmwatch.gauge("queue.depth");
 * long t0 = System.nanoTime();
 * handle(request);
 * latency.record(System.nanoTime() - t0);
 * requests.increment();
 * queue.set(workQueue.size());
 * Jvmwatch.event("deploy", "v1.4.2");
 * }</pre>
 *
 * Instruments are registered once by name and tags and then recorded lock-free, straight into
 * the mapped file (atomic adds through a VarHandle; no JNI on the recording path). Without the
 * agent every call is a no-op costing one branch. Names plus tags are at most 120 bytes; the
 * file holds 126 slots: a counter or gauge takes one, a timer four, so up to 126 counters or
 * 31 timers (beyond that, new instruments are no-ops). A name or tags
 * that could not become a valid Prometheus series (see {@link #refusal}) give a no-op
 * instrument and an {@code agent_warning} event; registering never throws.
 */
public final class Jvmwatch {
    private Jvmwatch() {}

    static final VarHandle LONGS = MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    /** The metrics region, or null when the agent is not loaded. */
    static final ByteBuffer BUF;
    private static final MethodHandle REGISTER;
    private static final MethodHandle EVENT;
    private static final MethodHandle APP;
    private static final MethodHandle WARN;

    // Layout of the metrics region (ring/src/metrics.rs; docs/ring-format.md).
    static final int HEADER = 4096;
    static final int INSTRUMENT_SIZE = 2048;
    static final int STRIPES = 128;
    static final int STRIPE_SHIFT = 6; // 64-byte stripes
    static final int STRIPE_MASK = 7; // 8 stripes
    static final int BUCKET_COUNT = 116;
    // A timer (format version 3) spans 4 slots; stripe t sits in slot t / 2 at 128 + (t % 2) × 960:
    // sum, max, then its own 116 buckets (ring/src/metrics.rs, timer_stripe).
    static final int TIMER_STRIPE_SIZE = 960;
    static final int TIMER_BUCKETS = 16;
    /** Timer kind as registered: 3 (timer) plus the layout bit for per-stripe buckets. */
    static final int STRIPED_TIMER = 3 | 1 << 8;

    static {
        ByteBuffer buf = null;
        MethodHandle register = null, event = null, app = null, warn = null;
        try {
            Class<?> bridge = Class.forName("io.jvmwatch.internal.Bridge", true, null);
            MethodHandles.Lookup l = MethodHandles.publicLookup();
            buf = (ByteBuffer) l.findStatic(bridge, "metrics", MethodType.methodType(ByteBuffer.class)).invoke();
            register = l.findStatic(bridge, "register", MethodType.methodType(int.class, int.class, String.class));
            event = l.findStatic(bridge, "event", MethodType.methodType(void.class, String.class, String.class));
            app = l.findStatic(bridge, "app", MethodType.methodType(void.class, String.class));
            warn = l.findStatic(bridge, "warn", MethodType.methodType(void.class, String.class));
        } catch (Throwable noAgent) {
            buf = null;
        }
        BUF = buf;
        REGISTER = register;
        EVENT = event;
        APP = app;
        WARN = warn;
    }

    /** True when the agent is loaded and metrics reach the ring file. */
    public static boolean active() {
        return BUF != null;
    }

    /** A counter (requests, bytes, errors, tasks done). {@code tags} are key, value pairs. */
    public static Counter counter(String name, String... tags) {
        return new Counter(register(1, name, tags));
    }

    /** A gauge (queue depth, pool size). */
    public static Gauge gauge(String name, String... tags) {
        return new Gauge(register(2, name, tags));
    }

    /** A latency histogram in nanoseconds (request latency, query time). */
    public static Timer timer(String name, String... tags) {
        return new Timer(register(STRIPED_TIMER, name, tags));
    }

    /**
     * Records a notable moment (deploy, config reload, slow query); detail is cut to 38 bytes.
     * Event names are kept in the ring's small string table: the application's share is 15
     * distinct names; further names are written as {@code event} with the name in front of
     * the detail ({@code name: detail}). Use a few fixed names and put what varies in the detail.
     */
    public static void event(String name, String detail) {
        if (BUF == null) {
            return;
        }
        // Typed locals: invokeExact takes the static types of its arguments as the call type.
        String d = detail == null ? "" : detail;
        String n = name == null ? "event" : name;
        try {
            EVENT.invokeExact(n, d);
        } catch (Throwable t) {
            // never let monitoring break the application
        }
    }

    /** Sets the application name (or instance id) in the ring header; the first call wins. */
    public static void setApp(String name) {
        if (BUF == null || name == null) {
            return;
        }
        try {
            APP.invokeExact(name);
        } catch (Throwable t) {
            // never let monitoring break the application
        }
    }

    /** The full name with tags: {@code name{k=v,k2=v2}}. Call {@link #refusal} first. */
    static String fullName(String name, String... tags) {
        if (tags == null || tags.length == 0) {
            return name;
        }
        StringBuilder sb = new StringBuilder(name).append('{');
        for (int i = 0; i < tags.length; i += 2) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append(tags[i]).append('=').append(tags[i + 1]);
        }
        return sb.append('}').toString();
    }

    /**
     * Why a name and tags cannot be registered, or null when they can. Names and tags end up
     * as Prometheus metric and label names (docs/http-api.md): control characters, the
     * characters that structure {@code name{k=v,...}}, names in the agent's {@code jvm.}
     * namespace, and tag keys that become the same label (after non-alphanumerics become
     * {@code _} and reserved or invalid keys get a {@code tag_} prefix: {@code a.b} next to
     * {@code a_b}, {@code jvm} next to {@code tag_jvm}, a key given twice) are refused.
     */
    static String refusal(String name, String... tags) {
        if (name == null || name.isEmpty()) {
            return "no name";
        }
        if (bad(name, "{},=")) {
            return "bad name";
        }
        if (name.startsWith("jvm.")) {
            return "jvm. is reserved";
        }
        if (tags == null) {
            return null;
        }
        if (tags.length % 2 != 0) {
            return "odd tags";
        }
        java.util.Set<String> labels = new java.util.HashSet<>();
        for (int i = 0; i < tags.length; i += 2) {
            String k = tags[i];
            String v = tags[i + 1];
            if (k == null || v == null || k.isEmpty() || bad(k, "{},=") || bad(v, "{},")) {
                return "bad tag";
            }
            if (!labels.add(label(k))) {
                return "tags collide";
            }
        }
        return null;
    }

    /** True if {@code s} has a control character or one of {@code chars}. */
    private static boolean bad(String s, String chars) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isISOControl(c) || chars.indexOf(c) >= 0) {
                return true;
            }
        }
        return false;
    }

    /** The Prometheus label a tag key becomes (sidecar/src/serve/metrics.rs, label_name). */
    static String label(String key) {
        StringBuilder sb = new StringBuilder(key.length() + 4);
        for (int i = 0; i < key.length(); i++) {
            char c = key.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
            // A supplementary character is one character: one '_' for its two UTF-16 units.
            if (Character.isHighSurrogate(c) && i + 1 < key.length() && Character.isLowSurrogate(key.charAt(i + 1))) {
                i++;
            }
            sb.append(ok ? c : '_');
        }
        String s = sb.toString();
        if (s.isEmpty() || Character.isDigit(s.charAt(0)) || s.startsWith("__") || s.equals("jvm")
                || s.equals("quantile") || s.equals("le")) {
            return "tag_" + s;
        }
        return s;
    }

    /**
     * Byte offset of the instrument's stripe 0, or -1 (no agent, refused, table full, name
     * too long). Never throws: a refused name gives a no-op instrument and an agent warning.
     */
    private static int register(int kind, String name, String... tags) {
        if (BUF == null) {
            return -1;
        }
        try {
            String why = refusal(name, tags);
            if (why != null) {
                String shown = name == null ? "" : name;
                WARN.invokeExact("metric refused: " + why + ": " + shown);
                return -1;
            }
            int index = (int) REGISTER.invokeExact(kind, fullName(name, tags));
            return index < 0 ? -1 : HEADER + index * INSTRUMENT_SIZE + STRIPES;
        } catch (Throwable t) {
            return -1;
        }
    }

    /** This thread's stripe offset: spreads concurrent writers over 8 cache lines. */
    @SuppressWarnings("deprecation") // Thread.getId: threadId() needs Java 19
    static int stripe() {
        return ((int) Thread.currentThread().getId() & STRIPE_MASK) << STRIPE_SHIFT;
    }

    /**
     * Offset of this thread's timer stripe from the timer's stripe 0 (same thread → same stripe
     * as {@link #stripe}): slot {@code t / 2}, then {@code (t % 2) × 960} bytes.
     */
    @SuppressWarnings("deprecation") // Thread.getId: threadId() needs Java 19
    static int timerStripe() {
        int t = (int) Thread.currentThread().getId() & STRIPE_MASK;
        return ((t >> 1) * INSTRUMENT_SIZE) + (t & 1) * TIMER_STRIPE_SIZE;
    }

    /**
     * Timer bucket of a duration in ns (≥ 0): four log-linear buckets per power of two from 1 µs.
     * Branch-free: below 1024 ns the formula goes negative and the max clamps it to bucket 0
     * ({@code ns | 128} keeps the exponent ≥ 7 so the shift stays positive, and bit 7 never
     * reaches the two bits after the leading one once {@code ns ≥ 1024}).
     */
    public static int bucketOf(long ns) {
        long v = ns | 128;
        int e = 63 - Long.numberOfLeadingZeros(v);
        int sub = (int) ((v >>> (e - 2)) & 3);
        return Math.max(0, Math.min(1 + (e - 10) * 4 + sub, BUCKET_COUNT - 1));
    }
}
