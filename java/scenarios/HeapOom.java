import java.util.ArrayList;
import java.util.List;

/** Fills the heap until OutOfMemoryError: Java heap space (uncaught). Run with a small -Xmx. */
public final class HeapOom {
    public static void main(String[] args) {
        List<long[]> hog = new ArrayList<>();
        while (true) {
            hog.add(new long[16 * 1024]);
        }
    }
}
