import io.jvmwatch.Counter;
import io.jvmwatch.Gauge;
import io.jvmwatch.Jvmwatch;
import io.jvmwatch.Timer;
import java.lang.reflect.Method;

/**
 * Registers instrument names and tags that are hostile to the Prometheus text format, both
 * through the io.jvmwatch API (which must refuse the bad ones without throwing) and straight
 * through the agent's Bridge.register native (as a foreign ring writer could), plus two names
 * that differ only in an emoji. Prints "registered", then with "hold" waits to be killed.
 */
public final class HostileNames {
    public static void main(String[] args) throws Exception {
        // Through the API: every one of these must come back as a usable (maybe no-op) object.
        Counter injected = Jvmwatch.counter("evil\n# TYPE app_injected gauge\napp_injected", "k", "v");
        Counter collide = Jvmwatch.counter("api.collide", "a.b", "1", "a_b", "2");
        Counter repeated = Jvmwatch.counter("api.repeated", "k", "1", "k", "2");
        Counter ctrlTag = Jvmwatch.counter("api.ctrl", "k\u0001", "v");
        Counter brace = Jvmwatch.counter("api{x=1}");
        Counter odd = Jvmwatch.counter("api.odd", "lonely");
        Counter nul = Jvmwatch.counter(null);
        Counter reserved = Jvmwatch.counter("jvm.up");
        Gauge builtinLabels = Jvmwatch.gauge("api.builtin", "jvm", "x", "quantile", "q", "le", "l");
        Timer fine = Jvmwatch.timer("api.fine", "route", "/a\"b\\c");
        for (Counter c : new Counter[] {injected, collide, repeated, ctrlTag, brace, odd, nul, reserved}) {
            c.increment();
        }
        builtinLabels.set(7);
        fine.record(5_000_000L);
        // Names that differ only in a supplementary character (surrogate pairs in UTF-16).
        Jvmwatch.counter("emoji.\uD83D\uDE00").add(1);
        Jvmwatch.counter("emoji.\uD83D\uDE03").add(2);
        Jvmwatch.counter("emoji.tag", "face", "\uD83D\uDE00").add(3);

        // Straight through the native, bypassing the API's checks (a foreign writer).
        Method register = null;
        try {
            Class<?> bridge = Class.forName("io.jvmwatch.internal.Bridge", true, null);
            register = bridge.getMethod("register", int.class, String.class);
        } catch (Throwable noAgent) {
            // without the agent there is nothing to register
        }
        if (register != null) {
            // Kinds: 1 counter, 2 gauge, 259 = 0x103 timer (the per-stripe layout, ring format 3).
            String[][] raw = {
                {"1", "raw.newline\n# HELP app_fake x\napp_fake_total{jvm=\"x\"} 1\n"},
                {"1", "raw.cr\rname"},
                {"1", "raw.x.y"},
                {"1", "raw.x_y"},
                {"1", "raw.labels{a.b=1,a_b=2,a-b=3}"},
                {"1", "raw.dup{k=1,k=2}"},
                {"259", "raw.timer{jvm=1,quantile=2,le=3,tag_jvm=4}"},
                {"2", "jvm.up"},
                {"2", "jvm.threads.live"},
                {"259", "raw.lat"},
                {"2", "raw.lat.seconds.count"},
                {"2", "raw.lat.seconds"},
                {"1", "raw.help\\back"},
                {"2", "raw.value{v=\"quoted\\\"}"},
                {"2", "9starts.with.digit{1k=v,__x=y,=empty}"},
            };
            for (String[] r : raw) {
                register.invoke(null, Integer.parseInt(r[0]), r[1]);
            }
        }
        System.out.println("registered active=" + Jvmwatch.active());
        System.out.flush();
        if (args.length > 0 && args[0].equals("hold")) {
            Thread.sleep(Long.MAX_VALUE);
        }
    }
}
