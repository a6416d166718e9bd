/* storybot-ask: ask the running robot for a story without a second Python.
 *
 *   storybot-ask [-n STEPS] [-s SEED] [-t TEMP] [-p TOPP] [--socket PATH] PROMPT...
 *
 * Prints the robot's replies as they come, one JSON object per line (the control
 * socket's protocol, robot/service/control.py), and exits 0 when the story ended with
 * "steps" or "bos", 1 when it ended otherwise, 2 when the robot could not be reached.
 * On the stock Duo image (12 MB available) any Python client (7 MB for `storybot ask`,
 * 3 MB or more for the lean one) leaves the robot too little to tell its story; this
 * one needs well under 1 MB (docs/duo.md, "Memory diet"). Built static by bundle.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void put_json_string(char *out, size_t cap, size_t *n, const char *s)
{
    /* the prompt as a JSON string: quotes, backslashes and control characters escaped */
    for (; *s && *n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            *n += (size_t)snprintf(out + *n, cap - *n, "\\%c", c);
        else if (c < 0x20)
            *n += (size_t)snprintf(out + *n, cap - *n, "\\u%04x", c);
        else
            out[(*n)++] = (char)c;
    }
}

int main(int argc, char **argv)
{
    const char *path = "/run/storybot/control.sock";
    char req[8192], prompt[4096] = "", opts[256] = "";
    size_t n = 0, plen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *key = !strcmp(a, "-n") ? "steps" : !strcmp(a, "-s") ? "seed"
                        : !strcmp(a, "-t") ? "temperature" : !strcmp(a, "-p") ? "topp" : NULL;
        if ((key || !strcmp(a, "--socket")) && i + 1 < argc) {
            char *end;
            const char *v = argv[++i];
            if (!key) { path = v; continue; }
            strtod(v, &end);  /* a number, or the request would not be JSON */
            if (*v == '\0' || *end != '\0') {
                fprintf(stderr, "storybot-ask: %s needs a number, not '%s'\n", a, v);
                return 2;
            }
            size_t o = strlen(opts);
            snprintf(opts + o, sizeof opts - o, ", \"%s\": %s", key, v);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "usage: storybot-ask [-n STEPS] [-s SEED] [-t TEMP] [-p TOPP] [--socket PATH] PROMPT...\n");
            return 2;
        } else {
            plen += (size_t)snprintf(prompt + plen, sizeof prompt - plen, "%s%s", plen ? " " : "", a);
            if (plen >= sizeof prompt) {
                fprintf(stderr, "storybot-ask: the prompt is longer than %zu bytes\n", sizeof prompt - 1);
                return 2;
            }
        }
    }
    n = (size_t)snprintf(req, sizeof req, "{\"cmd\": \"ask\", \"wait\": true%s, \"prompt\": \"", opts);
    put_json_string(req, sizeof req, &n, prompt);
    n += (size_t)snprintf(req + n, sizeof req - n, "\"}\n");

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "storybot-ask: the socket path %s is too long\n", path);
        return 2;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "storybot-ask: no storybot is running on %s; start it with '/etc/init.d/S99storybot start'\n", path);
        return 2;
    }
    if (write(fd, req, n) != (ssize_t)n) {
        fprintf(stderr, "storybot-ask: the robot closed the connection\n");
        return 2;
    }
    /* copy the replies through, remembering how the story ended */
    char buf[4096], last[512] = "";
    size_t ll = 0;
    ssize_t got;
    int finished = 0, ended = 0;
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        fwrite(buf, 1, (size_t)got, stdout);
        fflush(stdout);
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] != '\n') {
                if (ll + 1 < sizeof last)
                    last[ll++] = buf[i];
                continue;
            }
            last[ll] = '\0';
            ll = 0;
            if (strstr(last, "\"event\": \"summary\"")) {
                ended = 1;
                finished = strstr(last, "\"stop\": \"steps\"") || strstr(last, "\"stop\": \"bos\"");
            } else if (strstr(last, "\"event\": \"error\"")) {
                fprintf(stderr, "storybot-ask: the robot refused the prompt: %s\n", last);
                close(fd);
                return 2;
            }
        }
    }
    close(fd);
    if (!ended) {
        fprintf(stderr, "storybot-ask: the robot closed the connection before the story ended; see /var/log/storybot.log\n");
        return 2;
    }
    return finished ? 0 : 1;
}
