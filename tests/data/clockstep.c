/* A stepped wall clock for one process tree, for the clock-step fault test (issue 19).
 *
 * LD_PRELOAD'ed into `migfw testbed trial`: CLOCK_REALTIME (clock_gettime, gettimeofday,
 * time) gets the offset in seconds written in $MIGFW_CLOCK_OFFSET_FILE (re-read every
 * 50 ms), everything else is the real clock - as when the machine's wall clock is stepped,
 * but without stepping this shared machine's clock for every other process. Why not the
 * alternatives: a time namespace offsets only CLOCK_MONOTONIC/BOOTTIME and only when it is
 * created; Debian 12's libfaketime 0.9.10 with DONT_FAKE_MONOTONIC makes Python's
 * time.sleep fail with EINVAL (clock_nanosleep with TIMER_ABSTIME).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile long long offset_ns, checked_ns = -1000000000LL;
static const char *offset_file;

static void init(void) {
    if (!real_clock_gettime) {
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
        offset_file = getenv("MIGFW_CLOCK_OFFSET_FILE");
    }
}

static void refresh(void) {
    struct timespec raw;
    real_clock_gettime(CLOCK_MONOTONIC_RAW, &raw);
    long long now = raw.tv_sec * 1000000000LL + raw.tv_nsec;
    if (now - checked_ns < 50000000LL)
        return;
    checked_ns = now;
    FILE *f = fopen(offset_file, "r");
    if (f) {
        double seconds;
        if (fscanf(f, "%lf", &seconds) == 1)
            offset_ns = (long long)(seconds * 1e9);
        fclose(f);
    }
}

int clock_gettime(clockid_t id, struct timespec *tp) {
    init();
    int rc = real_clock_gettime(id, tp);
    if (rc == 0 && offset_file && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        refresh();
        long long ns = tp->tv_sec * 1000000000LL + tp->tv_nsec + offset_ns;
        tp->tv_sec = ns / 1000000000LL;
        tp->tv_nsec = ns % 1000000000LL;
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
