/** Prints one line: proves the program ran. */
public final class Hello {
    public static void main(String[] args) {
        System.out.println("program ran");
    }
}
