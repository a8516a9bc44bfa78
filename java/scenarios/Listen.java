import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;

/**
 * For the priority tuning test: "listen" opens a TCP server socket on 127.0.0.1 (a free
 * port), prints "listening PORT" and accepts (and closes) connections forever; "idle" opens
 * no socket and sleeps forever.
 */
public final class Listen {
    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].equals("listen")) {
            try (ServerSocket s = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
                System.out.println("listening " + s.getLocalPort());
                System.out.flush();
                while (true) {
                    try (Socket c = s.accept()) {
                        c.getOutputStream().write('x');
                    }
                }
            }
        }
        System.out.println("idle");
        System.out.flush();
        while (true) {
            Thread.sleep(60_000);
        }
    }
}
