/* A stateful service with a working set: N MiB of anonymous memory, each page filled, and a
 * counter served on TCP port 7000 (one request per connection: "COUNT SUM\n", SUM read from one
 * byte per MiB of the working set, so a reply proves the memory came along). Static, so it runs
 * in a busybox container. Built by bench/benchmarks/migrate.py (gcc -static). */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t n = (size_t)atol(argc > 1 ? argv[1] : "16") << 20;
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i += 4096) memset(p + i, (int)((i >> 12) % 251) + 1, 4096);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7000)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) return 1;
    signal(SIGPIPE, SIG_IGN);
    unsigned long count = 0;
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        char buf[64];
        if (read(c, buf, sizeof buf) <= 0) { close(c); continue; }
        unsigned long sum = 0;
        for (size_t i = 0; i < n; i += 1 << 20) sum += p[i];
        int len = snprintf(buf, sizeof buf, "%lu %lu\n", ++count, sum);
        if (write(c, buf, len) < 0) {}
        close(c);
    }
}
