#define _POSIX_C_SOURCE 200809L
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int lmc_mmap_open(const char *path, lmc_mmap *m, lmc_error *err)
{
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return lmc_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return lmc_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lmc_fail(err, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return lmc_fail(err, "%s: cannot mmap: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void lmc_mmap_close(lmc_mmap *m)
{
    if (m->data)
        munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

void lmc_mmap_release(const lmc_mmap *m, const void *p, size_t n)
{
    if (!m->data || !n)
        return;
    uintptr_t base = (uintptr_t)m->data, end = base + m->size;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + n;
    if (a < base || b > end)
        return;
    a = a / page * page; /* the map itself starts on a page */
    b = (b + page - 1) / page * page;
    if (b > (end + page - 1) / page * page)
        b = (end + page - 1) / page * page;
    /* read-only private file map: dropped pages are re-read, never lost */
    madvise((void *)a, b - a, MADV_DONTNEED);
}

int lmc_read_file(const char *path, char **data, size_t *size, lmc_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return lmc_fail(err, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return lmc_fail(err, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return lmc_fail(err, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return lmc_fail(err, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    if (size)
        *size = n;
    return 0;
}

int lmc_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lmc_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

char *lmc_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Temporary files that a signal must clean up. A small fixed table: the tool
 * writes at most a few outputs at once. */
#define LMC_MAX_PENDING 8
static char *volatile pending[LMC_MAX_PENDING];
static int handlers_installed;

/* Pending output directories: their path and the files registered in them,
 * fixed-size so that the signal handler only calls unlink and rmdir. */
#define LMC_MAX_PENDING_DIRS 2
static struct {
    char *volatile dir;
    char *volatile files[LMC_ATOMIC_DIR_FILES];
} pending_dirs[LMC_MAX_PENDING_DIRS];

static void remove_dir_slot(int s)
{
    for (int k = 0; k < LMC_ATOMIC_DIR_FILES; k++)
        if (pending_dirs[s].files[k])
            unlink(pending_dirs[s].files[k]);
    if (pending_dirs[s].dir)
        rmdir(pending_dirs[s].dir);
}

static void on_signal(int sig)
{
    for (int i = 0; i < LMC_MAX_PENDING; i++)
        if (pending[i])
            unlink(pending[i]); /* resumable partial outputs are not tracked */
    for (int s = 0; s < LMC_MAX_PENDING_DIRS; s++)
        remove_dir_slot(s);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    if (!handlers_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        /* a file-size limit (RLIMIT_FSIZE) must make write() fail with EFBIG,
         * reported naming the file, not kill the process and leave the
         * temporary behind; a handler the program set is left alone */
        struct sigaction old;
        if (sigaction(SIGXFSZ, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            signal(SIGXFSZ, SIG_IGN);
        handlers_installed = 1;
    }
}

static void track(char *p)
{
    install_handlers();
    for (int i = 0; i < LMC_MAX_PENDING; i++)
        if (!pending[i]) {
            pending[i] = p;
            return;
        }
}

static void untrack(char *p)
{
    for (int i = 0; i < LMC_MAX_PENDING; i++)
        if (pending[i] == p)
            pending[i] = NULL;
}

int lmc_atomic_open(lmc_atomic_file *af, const char *path, lmc_error *err)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->final_path = strdup(path);
    af->tmp_path = malloc(n + 16);
    if (!af->final_path || !af->tmp_path) {
        free(af->final_path);
        free(af->tmp_path);
        return lmc_fail(err, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(af->final_path);
        free(af->tmp_path);
        af->final_path = af->tmp_path = NULL;
        return lmc_fail(err, "%s: cannot create output: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        unlink(af->tmp_path);
        return lmc_fail(err, "%s: cannot open output stream", path);
    }
    track(af->tmp_path);
    return 0;
}

int lmc_atomic_open_partial(lmc_atomic_file *af, const char *path, const char *tmp_path,
                            int64_t keep_bytes, lmc_error *err)
{
    memset(af, 0, sizeof *af);
    af->final_path = strdup(path);
    af->tmp_path = strdup(tmp_path);
    if (!af->final_path || !af->tmp_path) {
        free(af->final_path);
        free(af->tmp_path);
        return lmc_fail(err, "%s: out of memory", path);
    }
    int fd = open(tmp_path, keep_bytes < 0 ? O_RDWR | O_CREAT | O_TRUNC : O_RDWR, 0644);
    if (fd < 0 || (keep_bytes >= 0 && ftruncate(fd, (off_t)keep_bytes) != 0) ||
        lseek(fd, 0, SEEK_END) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        lmc_fail(err, "%s: cannot %s %s: %s", path, keep_bytes < 0 ? "create" : "continue",
                 tmp_path, strerror(e));
        free(af->final_path);
        free(af->tmp_path);
        af->final_path = af->tmp_path = NULL;
        return -1;
    }
    /* not "ab": that sets O_APPEND, and the preamble's pwrite would append */
    af->f = fdopen(fd, keep_bytes < 0 ? "wb" : "r+b");
    if (!af->f) {
        close(fd);
        free(af->final_path);
        free(af->tmp_path);
        af->final_path = af->tmp_path = NULL;
        return lmc_fail(err, "%s: cannot open output stream", path);
    }
    af->keep = 1;
    install_handlers(); /* SIGXFSZ ignored; no cleanup entry: signals leave it */
    return 0;
}

int lmc_atomic_pwrite(lmc_atomic_file *af, uint64_t off, const void *buf, size_t n,
                      lmc_error *err)
{
    if (fflush(af->f) != 0)
        return lmc_fail(err, "%s: write failed: %s", af->final_path, strerror(errno));
    const unsigned char *p = buf;
    while (n) {
        ssize_t k = pwrite(fileno(af->f), p, n, (off_t)off);
        if (k <= 0)
            return lmc_fail(err, "%s: write failed: %s", af->final_path,
                            k < 0 ? strerror(errno) : "no progress");
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return 0;
}

int lmc_atomic_sync(lmc_atomic_file *af, lmc_error *err)
{
    if (fflush(af->f) != 0 || fdatasync(fileno(af->f)) != 0)
        return lmc_fail(err, "%s: write failed: %s", af->final_path, strerror(errno));
    return 0;
}

uint64_t lmc_atomic_size(lmc_atomic_file *af)
{
    off_t o = ftello(af->f);
    return o < 0 ? 0 : (uint64_t)o;
}

int lmc_atomic_write(lmc_atomic_file *af, const void *buf, size_t n, lmc_error *err)
{
    if (n && fwrite(buf, 1, n, af->f) != n)
        return lmc_fail(err, "%s: write failed: %s", af->final_path, strerror(errno));
    return 0;
}

int lmc_atomic_commit(lmc_atomic_file *af, lmc_error *err)
{
    if (!af->f)
        return lmc_fail(err, "%s: output not open", af->final_path ? af->final_path : "?");
    int bad = fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int e = errno;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad) {
        lmc_fail(err, "%s: write failed: %s", af->final_path, strerror(e));
        lmc_atomic_abort(af);
        return -1;
    }
    if (rename(af->tmp_path, af->final_path) != 0) {
        lmc_fail(err, "%s: cannot rename into place: %s", af->final_path, strerror(errno));
        lmc_atomic_abort(af);
        return -1;
    }
    /* make the rename itself durable */
    char *d = strdup(af->final_path);
    if (d) {
        int dfd = open(dirname(d), O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(d);
    }
    untrack(af->tmp_path);
    free(af->tmp_path);
    free(af->final_path);
    af->tmp_path = af->final_path = NULL;
    return 0;
}

void lmc_atomic_abort(lmc_atomic_file *af)
{
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
    }
    if (af->tmp_path) {
        unlink(af->tmp_path);
        untrack(af->tmp_path);
        free(af->tmp_path);
        af->tmp_path = NULL;
    }
    free(af->final_path);
    af->final_path = NULL;
}

/* ------------------------------------------------------ atomic directories */

int lmc_atomic_dir_open(lmc_atomic_dir *ad, const char *path, lmc_error *err)
{
    memset(ad, 0, sizeof *ad);
    ad->slot = -1;
    for (int s = 0; s < LMC_MAX_PENDING_DIRS && ad->slot < 0; s++)
        if (!pending_dirs[s].dir)
            ad->slot = s;
    if (ad->slot < 0)
        return lmc_fail(err, "%s: too many output directories open at once", path);
    size_t n = strlen(path);
    ad->final_path = strdup(path);
    ad->tmp_path = malloc(n + 16);
    if (!ad->final_path || !ad->tmp_path) {
        free(ad->final_path);
        free(ad->tmp_path);
        ad->final_path = ad->tmp_path = NULL;
        return lmc_fail(err, "%s: out of memory", path);
    }
    snprintf(ad->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    if (!mkdtemp(ad->tmp_path)) {
        int e = errno;
        free(ad->final_path);
        free(ad->tmp_path);
        ad->final_path = ad->tmp_path = NULL;
        return lmc_fail(err, "%s: cannot create output directory: %s", path, strerror(e));
    }
    chmod(ad->tmp_path, 0755);
    install_handlers();
    pending_dirs[ad->slot].dir = ad->tmp_path;
    return 0;
}

char *lmc_atomic_dir_file(lmc_atomic_dir *ad, const char *name)
{
    int k = 0;
    while (k < LMC_ATOMIC_DIR_FILES && pending_dirs[ad->slot].files[k])
        k++;
    if (k == LMC_ATOMIC_DIR_FILES)
        return NULL;
    char *p = lmc_path_join(ad->tmp_path, name), *q = p ? strdup(p) : NULL;
    if (!q) {
        free(p);
        return NULL;
    }
    pending_dirs[ad->slot].files[k] = q; /* the handler's copy, freed at commit/abort */
    return p;
}

static void release_dir_slot(lmc_atomic_dir *ad)
{
    for (int k = 0; k < LMC_ATOMIC_DIR_FILES; k++) {
        char *f = pending_dirs[ad->slot].files[k];
        pending_dirs[ad->slot].files[k] = NULL;
        free(f);
    }
    pending_dirs[ad->slot].dir = NULL;
    free(ad->tmp_path);
    free(ad->final_path);
    ad->tmp_path = ad->final_path = NULL;
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int lmc_atomic_dir_commit(lmc_atomic_dir *ad, lmc_error *err)
{
    if (!ad->tmp_path)
        return lmc_fail(err, "output directory not open");
    fsync_path(ad->tmp_path);
    if (rename(ad->tmp_path, ad->final_path) != 0) {
        lmc_fail(err, "%s: cannot rename into place: %s", ad->final_path, strerror(errno));
        lmc_atomic_dir_abort(ad);
        return -1;
    }
    char *d = strdup(ad->final_path);
    if (d) {
        fsync_path(dirname(d));
        free(d);
    }
    release_dir_slot(ad);
    return 0;
}

void lmc_atomic_dir_abort(lmc_atomic_dir *ad)
{
    if (!ad->tmp_path)
        return;
    remove_dir_slot(ad->slot);
    release_dir_slot(ad);
}

int lmc_copy_file(const char *src, const char *dst, lmc_error *err)
{
    char *data;
    size_t n;
    if (lmc_read_file(src, &data, &n, err) != 0)
        return -1;
    lmc_atomic_file af;
    int rc = -1;
    if (lmc_atomic_open(&af, dst, err) == 0) {
        if (lmc_atomic_write(&af, data, n, err) != 0)
            lmc_atomic_abort(&af);
        else
            rc = lmc_atomic_commit(&af, err);
    }
    free(data);
    return rc;
}
