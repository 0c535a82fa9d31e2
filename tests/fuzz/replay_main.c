/*
 * A main() for the fuzz harnesses in builds without libFuzzer (gcc, the
 * plain and sanitizer builds): runs LLVMFuzzerTestOneInput once over each
 * file named, or each file in each directory named, so the seed corpus and
 * every recorded regression are replayed by ctest in every build. A broken
 * invariant aborts, which fails the test.
 *
 * usage: fuzz_http_request_replay PATH...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    /* Named first, so a failure says which input it was. */
    fprintf(stderr, "input %s\n", path);
    /* An exact-size copy, as libFuzzer hands inputs over: a read past the
     * end is then caught by ASan. */
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned runs = 0;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]) < 0;
            runs++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            bad |= run_file(path) < 0;
            runs++;
        }
        if (d)
            closedir(d);
    }
    printf("replayed %u input(s)\n", runs);
    if (!runs) {
        fprintf(stderr, "no input to replay\n");
        return 1;
    }
    return bad;
}
