/*
 * Pacemaker alert agent of the VM testbed, in C: the line harness/testbed/assets/fallover-alert writes
 * (the same keys, the same JSON spelling), kept in the guest's log and sent to the harness's collector
 * in the lab (address in `collector`, beside this program).
 *
 * Why C: Pacemaker runs the agent once per event on each node concerned, and the first alert of a lost
 * node comes while the survivors are busy taking its resources over. On a 1-vCPU TCG guest in that state
 * `python3 -S -c pass` took 1.0-2.3 s and `/bin/true` 0.3-0.7 s (measured 2026-12-03); the Python forwarder
 * ran 2.0 s from execd's fork to its first line of work on pacemaker_kill-node1, a case whose notification
 * limit is 15 s. vagrant/fallover-alert-forward (Python) stays as the fallback where no compiler is found.
 *
 * Built on the harness's side (static: the guest's libc need not match the host's) by
 * harness/testbed/vagrant.py; tests/unit/test_alert_forward_c.py checks its lines against the Python agent's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *FIELDS[] = {"kind", "version", "node", "nodeid", "desc", "rsc", "task", "interval", "rc",
                               "target_rc", "status", "exec_time", "attribute_name", "attribute_value",
                               "timestamp", "timestamp_epoch", "timestamp_usec", "recipient", "node_sequence"};
#define NFIELDS (sizeof(FIELDS) / sizeof(FIELDS[0]))
#define SEND_TIMEOUT_S 3
#define TRIES 3

struct item { const char *key; const char *value; int is_float; };

static char *out;
static size_t len, cap;

static void put(const char *s, size_t n) {
    if (len + n + 1 > cap) {
        cap = (len + n + 1) * 2;
        out = realloc(out, cap);
        if (!out) exit(1);
    }
    memcpy(out + len, s, n);
    len += n;
    out[len] = 0;
}

static void puts_(const char *s) { put(s, strlen(s)); }

static void put_u(unsigned cp) {
    char b[16];
    snprintf(b, sizeof b, "\\u%04x", cp);
    puts_(b);
}

/* The length of a valid UTF-8 sequence at s (as Python's strict decoder accepts it) and its code point; 0 if
 * the byte at s starts none (Python's surrogateescape then gives U+DC00 + that byte). */
static int utf8(const unsigned char *s, unsigned *cp) {
    unsigned c = s[0];
    int n;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; *cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; *cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; *cp = c & 0x07; }
    else return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && *cp < 0x800) || (n == 4 && (*cp < 0x10000 || *cp > 0x10FFFF)) || (*cp >= 0xD800 && *cp <= 0xDFFF))
        return 0;
    return n;
}

/* A JSON string, ASCII only, exactly as the Python agent's quote() (json.dumps) spells it. */
static void quote(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    puts_("\"");
    while (*s) {
        unsigned c = *s, cp;
        int n;
        switch (c) {
        case '"': puts_("\\\""); s++; continue;
        case '\\': puts_("\\\\"); s++; continue;
        case '\n': puts_("\\n"); s++; continue;
        case '\r': puts_("\\r"); s++; continue;
        case '\t': puts_("\\t"); s++; continue;
        case '\b': puts_("\\b"); s++; continue;
        case '\f': puts_("\\f"); s++; continue;
        }
        if (c >= 0x20 && c <= 0x7E) { put((const char *)s, 1); s++; continue; }
        if (c < 0x80) { put_u(c); s++; continue; }
        n = utf8(s, &cp);
        if (n == 0) { put_u(0xDC00 | c); s++; continue; }
        if (cp > 0xFFFF) {
            cp -= 0x10000;
            put_u(0xD800 | (cp >> 10));
            put_u(0xDC00 | (cp & 0x3FF));
        } else {
            put_u(cp);
        }
        s += n;
    }
    puts_("\"");
}

static int by_key(const void *a, const void *b) {
    return strcmp(((const struct item *)a)->key, ((const struct item *)b)->key);
}

static void send_line(const char *dir) {
    char path[4096], addr[256];
    snprintf(path, sizeof path, "%s/collector", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(addr, sizeof addr, f)) { fclose(f); return; }
    fclose(f);
    addr[strcspn(addr, " \t\r\n")] = 0;
    char *colon = strrchr(addr, ':');
    if (!colon) return;
    *colon = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(colon + 1))};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) return;
    struct timeval tv = {.tv_sec = SEND_TIMEOUT_S};
    for (int i = 0; i < TRIES; i++) {  /* a collector that is away costs at most TRIES x the timeout */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            size_t done = 0;
            while (done < len) {
                ssize_t w = write(fd, out + done, len - done);
                if (w <= 0) break;
                done += (size_t)w;
            }
            close(fd);
            if (done == len) return;
            continue;
        }
        close(fd);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    struct item items[NFIELDS + 2];
    size_t n = 0;
    char names[NFIELDS][64], wall[64];
    struct timespec ts;
    struct utsname u;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(wall, sizeof wall, "%.6f", ts.tv_sec + ts.tv_nsec / 1e9);
    for (size_t i = 0; i < NFIELDS; i++) {
        snprintf(names[i], sizeof names[i], "CRM_alert_%s", FIELDS[i]);
        const char *v = getenv(names[i]);
        if (v && *v) items[n++] = (struct item){FIELDS[i], v, 0};
    }
    items[n++] = (struct item){"wall", wall, 1};
    uname(&u);
    items[n++] = (struct item){"from", u.nodename, 0};
    qsort(items, n, sizeof items[0], by_key);
    puts_("{");
    for (size_t i = 0; i < n; i++) {
        if (i) puts_(", ");
        quote(items[i].key);
        puts_(": ");
        if (items[i].is_float) puts_(items[i].value);
        else quote(items[i].value);
    }
    puts_("}\n");
    const char *recipient = getenv("CRM_alert_recipient");
    int fd = open(recipient && *recipient ? recipient : "/dev/null", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0664);
    if (fd >= 0) {  /* one write on an O_APPEND fd: concurrent agents' lines stay whole */
        if (write(fd, out, len) < 0) { /* the collector still gets it */ }
        close(fd);
    }
    char self[4096];
    ssize_t r = readlink("/proc/self/exe", self, sizeof self - 1);
    if (r > 0) {
        self[r] = 0;
        send_line(dirname(self));
    } else {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", argv[0]);
        send_line(dirname(copy));
    }
    return 0;
}
