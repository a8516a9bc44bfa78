/**
 * A short-lived program for the harness's short-lived JVM section: prints {@code started},
 * sleeps {@code lifeMs} (args[0]), prints {@code done <peak RSS in KiB>} and returns, so the JVM
 * exits as a command-line tool's or a batch step's does. The peak (VmHWM) is read here because
 * the harness's {@code wait4} would report its own size at the fork.
 */
public final class ShortLived {
    private ShortLived() {}

    public static void main(String[] a) throws Exception {
        BenchSupport.start();
        System.out.println("started");
        System.out.flush();
        long lifeMs = Long.parseLong(a[0]);
        if (lifeMs > 0) {
            Thread.sleep(lifeMs);
        }
        String hwm = "0";
        for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                hwm = line.substring(6).trim().split("\\s+")[0];
            }
        }
        System.out.println("done " + hwm);
        System.out.flush();
    }
}
