/**
 * Collects once (System.gc()) and ends at once: the in-VM monitor may not have read anything
 * yet, so its read at VM death is what tells the collection.
 */
public final class GcExit {
    public static void main(String[] args) {
        System.gc();
        System.out.println("collected");
    }
}
