package strom.bench;

import java.nio.file.Files;
import java.nio.file.Path;

/** What this process used, from /proc (as Strom's harness reads it for Strom). */
public final class Proc {
    private Proc() {}

    /** User + system CPU time of the whole process, in seconds. */
    public static double cpuSeconds() {
        try {
            String stat = Files.readString(Path.of("/proc/self/stat"));
            // Fields after the command name, which is in parentheses and may hold spaces.
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            long ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]);
            return ticks / 100.0;
        } catch (Exception e) {
            return 0;
        }
    }

    /** Peak resident set size (VmHWM), in KiB. */
    public static long peakRssKib() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (Exception e) {
            // fall through
        }
        return 0;
    }
}
