/* migfw-syn: the egress attacker (issue 22) - TCP SYNs from the guest to a destination its
 * ruleset blocks, at a constant rate, with the attack-window contract's conventions.
 *
 *   migfw-syn DST BLOCKED_PORT RATE_HZ ALLOWED_PORT ALLOWED_RATE_HZ SPORT_BASE SENDLOG
 *
 * Per port p: probe k is due at t0 + k/rate (the allowed port half a period later), its TCP
 * sequence number is k, its source port SPORT_BASE + p % 1000; after each send attempt one
 * row `port,index,t_sched_ns,t_send_ns` (CLOCK_REALTIME epoch ns, the guest's clock) is kept,
 * refused or not: the guest's own firewall refusing the SYN (EPERM from its output chain) is
 * the firewall at work, so the attempt is a probe it blocked (the sink's capture is the
 * evidence of one that got out). The refusals are counted on stdout. On SIGTERM/SIGINT the rows go to SENDLOG (written to a temporary
 * name, then renamed) with the header line. ALLOWED_RATE_HZ 0: no allowed-port probes.
 * A raw IPPROTO_TCP socket: the kernel adds the IP header, so the SYN leaves through the
 * guest's own output path and its firewall (the ruleset's OUTPUT chain). Built static with
 * Debian's gcc by the guest image builder (migfw.testbed.guest).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) { (void)sig; stop = 1; }

struct row { int port; long index; long long sched, sent; };

static long long now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint16_t checksum(const uint8_t *data, size_t len, uint32_t sum) {
    for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(data[i] << 8 | data[i + 1]);
    if (len & 1) sum += (uint32_t)(data[len - 1] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void syn(uint8_t *seg, uint32_t src, uint32_t dst, int sport, int dport, uint32_t seq) {
    memset(seg, 0, 20);
    seg[0] = (uint8_t)(sport >> 8); seg[1] = (uint8_t)sport;
    seg[2] = (uint8_t)(dport >> 8); seg[3] = (uint8_t)dport;
    seg[4] = (uint8_t)(seq >> 24); seg[5] = (uint8_t)(seq >> 16);
    seg[6] = (uint8_t)(seq >> 8); seg[7] = (uint8_t)seq;
    seg[12] = 5 << 4;          /* data offset: 20 bytes */
    seg[13] = 0x02;            /* SYN */
    seg[14] = 0xfa; seg[15] = 0xf0; /* window 64240 */
    uint32_t sum = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + 20;
    uint16_t c = checksum(seg, 20, sum);
    seg[16] = (uint8_t)(c >> 8); seg[17] = (uint8_t)c;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: migfw-syn DST BLOCKED_PORT RATE_HZ ALLOWED_PORT ALLOWED_RATE_HZ "
                        "SPORT_BASE SENDLOG\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "migfw-syn: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    int ports[2] = {atoi(argv[2]), atoi(argv[4])};
    double rates[2] = {atof(argv[3]), atof(argv[5])};
    int base = atoi(argv[6]);
    const char *log = argv[7];
    int n = rates[1] > 0 ? 2 : 1;
    if (rates[0] <= 0 || ports[0] <= 0 || ports[0] > 65535 || (n == 2 && ports[1] <= 0)) {
        fprintf(stderr, "migfw-syn: rates must be positive and ports 1-65535\n");
        return 2;
    }
    int sock = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
    if (sock < 0) { perror("migfw-syn: socket"); return 2; }
    /* The source address the kernel will use towards DST. */
    int probe = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in local; socklen_t llen = sizeof local;
    struct sockaddr_in dport = to; dport.sin_port = htons(9);
    if (probe < 0 || connect(probe, (struct sockaddr *)&dport, sizeof dport) < 0 ||
        getsockname(probe, (struct sockaddr *)&local, &llen) < 0) {
        perror("migfw-syn: no route"); return 2;
    }
    close(probe);
    uint32_t src = ntohl(local.sin_addr.s_addr), dst = ntohl(to.sin_addr.s_addr);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, SIG_IGN); /* started in the background of an SSH session that then ends */
    size_t cap = 1 << 16, used = 0, refused = 0;
    struct row *rows = malloc(cap * sizeof *rows);
    if (!rows) return 2;
    long long period[2], offset[2], next[2] = {0, 0};
    for (int i = 0; i < n; i++) period[i] = (long long)(1e9 / rates[i]);
    offset[0] = 0; offset[1] = period[0] / 2;
    long long mono0 = now_ns(CLOCK_MONOTONIC) + 20000000LL;
    long long wall_minus_mono = now_ns(CLOCK_REALTIME) - now_ns(CLOCK_MONOTONIC);
    uint8_t seg[20];
    while (!stop) {
        int which = 0;
        long long due = mono0 + offset[0] + next[0] * period[0];
        if (n == 2) {
            long long due1 = mono0 + offset[1] + next[1] * period[1];
            if (due1 < due) { which = 1; due = due1; }
        }
        struct timespec ts = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop) {}
        if (stop) break;
        long k = next[which]++;
        int sport = base + ports[which] % 1000;
        syn(seg, src, dst, sport, ports[which], (uint32_t)k);
        if (sendto(sock, seg, sizeof seg, 0, (struct sockaddr *)&to, sizeof to) != sizeof seg)
            refused++;
        if (used == cap) {
            struct row *more = realloc(rows, 2 * cap * sizeof *rows);
            if (!more) break;
            rows = more; cap *= 2;
        }
        rows[used++] = (struct row){ports[which], k, due + wall_minus_mono, now_ns(CLOCK_REALTIME)};
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.part", log);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror("migfw-syn: sendlog"); return 2; }
    fprintf(f, "port,index,t_sched_ns,t_send_ns\n");
    for (size_t i = 0; i < used; i++)
        fprintf(f, "%d,%ld,%lld,%lld\n", rows[i].port, rows[i].index, rows[i].sched, rows[i].sent);
    if (fclose(f) != 0 || rename(tmp, log) != 0) { perror("migfw-syn: sendlog"); return 2; }
    printf("DONE sent=%zu refused=%zu\n", used, refused);
    return 0;
}
