/* driver.c -- a main() for the harnesses where libFuzzer is not at hand: runs
 * LLVMFuzzerTestOneInput once per file named on the command line (or per file in each
 * directory named), as `harness -runs=0 DIR` would. With -fsanitize=address,undefined
 * this is the corpus replay of tests/unit/test_fuzz.py. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int one(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); perror(path); return 1; }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int runs = 0, bad = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (argv[a][0] == '-') continue;   /* libFuzzer flags, meaningless here */
        if (stat(argv[a], &st) != 0) { perror(argv[a]); return 1; }
        if (!S_ISDIR(st.st_mode)) { bad |= one(argv[a]); runs++; continue; }
        DIR *d = opendir(argv[a]);
        struct dirent *e;
        char path[4096];
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            bad |= one(path);
            runs++;
        }
        if (d) closedir(d);
    }
    printf("driver: %d inputs replayed\n", runs);
    return bad;
}
