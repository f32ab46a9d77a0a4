/* migfw-dirty: dirty a working set of W MiB of guest memory at R MiB/s, and say what it did.
 *
 *   migfw-dirty W_MIB RATE_MIBPS REPORT_FILE
 *
 * Allocates W MiB, touches every page once (so the set is resident), then every 10 ms writes
 * one word into each of the next RATE*10ms/4KiB pages, cycling through the set. A page
 * written is a page QEMU's dirty log sees as dirty, so the hypervisor measures R MiB/s as
 * long as the set is not exhausted within one of its passes (W >= R x pass time).
 * Every second, and on SIGTERM/SIGINT, REPORT_FILE is rewritten (via rename, so a reader
 * never sees half a report) with one line of key=value pairs: what was asked, the pages
 * written since start, the seconds elapsed and the achieved rate in MiB/s, overall and over
 * the last second. Built static with Debian's gcc by the guest image builder
 * (migfw.testbed.guest); the guest has no libc of its own.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define TICK_NS 10000000L /* 10 ms */

static volatile sig_atomic_t stop = 0;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *path, double w_mib, double r_mibps, unsigned long long pages,
                   double elapsed, double last_mibps, int final) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    double achieved = elapsed > 0 ? pages * (double)PAGE / 1048576.0 / elapsed : 0.0;
    fprintf(f,
            "working_set_mib=%.3f rate_mibps=%.3f pages_written=%llu seconds=%.3f "
            "achieved_mibps=%.3f last_second_mibps=%.3f final=%d\n",
            w_mib, r_mibps, pages, elapsed, achieved, last_mibps, final);
    fclose(f);
    rename(tmp, path);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: migfw-dirty W_MIB RATE_MIBPS REPORT_FILE\n");
        return 2;
    }
    double w_mib = atof(argv[1]), r_mibps = atof(argv[2]);
    const char *path = argv[3];
    if (w_mib <= 0 || r_mibps < 0) {
        fprintf(stderr, "migfw-dirty: W_MIB must be > 0 and RATE_MIBPS >= 0\n");
        return 2;
    }
    size_t npages = (size_t)(w_mib * 1048576.0 / PAGE);
    if (npages == 0) npages = 1;
    volatile uint64_t *mem = malloc(npages * PAGE);
    if (!mem) {
        fprintf(stderr, "migfw-dirty: cannot allocate %.1f MiB\n", w_mib);
        return 1;
    }
    for (size_t i = 0; i < npages; i++) mem[i * (PAGE / 8)] = i; /* make it resident */
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    double per_tick = r_mibps * 1048576.0 / PAGE * (TICK_NS / 1e9); /* pages per tick */
    double owed = 0.0;
    size_t next = 0;
    unsigned long long written = 0, written_at_report = 0;
    uint64_t stamp = 1;
    double start = now_s(), last_report = start;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    report(path, w_mib, r_mibps, 0, 0.0, 0.0, 0);
    while (!stop) {
        owed += per_tick;
        while (owed >= 1.0) {
            mem[next * (PAGE / 8)] = stamp++;
            next = (next + 1) % npages;
            owed -= 1.0;
            written++;
        }
        /* Absolute deadlines: a late tick (the guest was paused) is caught up, not lost. */
        deadline.tv_nsec += TICK_NS;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_nsec -= 1000000000L;
            deadline.tv_sec += 1;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL);
        double t = now_s();
        if (t - last_report >= 1.0) {
            double last = (written - written_at_report) * (double)PAGE / 1048576.0 /
                          (t - last_report);
            report(path, w_mib, r_mibps, written, t - start, last, 0);
            written_at_report = written;
            last_report = t;
        }
    }
    report(path, w_mib, r_mibps, written, now_s() - start, 0.0, 1);
    return 0;
}
