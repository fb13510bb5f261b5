/*
 * kprune's instruction counter: a QEMU TCG plugin (plugin API version 1, QEMU 7.2).
 *
 * Counts the guest instructions executed, with one inline add per translated
 * block, and records the count whenever the guest makes the marker system
 * call (number `syscall`, first argument `magic`, second argument a label).
 * At exit it writes one line per mark, "LABEL COUNT", and "exit COUNT".
 *
 *   qemu-aarch64 -plugin ./libqemu_count.so,out=marks.txt,syscall=N,magic=M PROGRAM
 *
 * kprune/latency/instructions.py builds it with the system compiler and reads
 * its marks. The counter is one uint64_t shared by all guest threads (the API's
 * inline add is not atomic): count single-threaded programs. A block's count is
 * added when it starts, so a block left early (a fault) counts whole: rare, and
 * not in an inference loop.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few declarations of QEMU's qemu-plugin.h this plugin uses (Debian ships no
 * header); their types are those of plugin API version 1. */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct {
        int min;
        int cur;
    } version;
    bool system_emulation;
    union {
        struct {
            int smp_vcpus;
            int max_vcpus;
        } system;
    };
} qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t executed;
static int64_t mark_syscall = -1;
static uint64_t mark_magic;
static const char *out_path;
static struct {
    uint64_t label, count;
} *marks;
static size_t mark_count, mark_capacity;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                       uint64_t a8)
{
    (void)id, (void)vcpu_index, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != mark_syscall || a1 != mark_magic) {
        return;
    }
    if (mark_count == mark_capacity) {
        size_t capacity = mark_capacity ? 2 * mark_capacity : 1024;
        void *grown = realloc(marks, capacity * sizeof(*marks));
        if (grown == NULL) {
            fprintf(stderr, "qemu_count: out of memory for marks\n");
            exit(1);
        }
        marks = grown;
        mark_capacity = capacity;
    }
    marks[mark_count].label = a2;
    marks[mark_count].count = executed;
    mark_count++;
}

static void write_marks(qemu_plugin_id_t id, void *userdata)
{
    (void)id, (void)userdata;
    FILE *out = fopen(out_path, "w");
    if (out == NULL) {
        fprintf(stderr, "qemu_count: cannot write %s\n", out_path);
        return;
    }
    for (size_t i = 0; i < mark_count; i++) {
        fprintf(out, "%" PRIu64 " %" PRIu64 "\n", marks[i].label, marks[i].count);
    }
    fprintf(out, "exit %" PRIu64 "\n", executed);
    fclose(out);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        const char *value = strchr(argv[i], '=');
        if (value == NULL) {
            fprintf(stderr, "qemu_count: argument %s is not KEY=VALUE\n", argv[i]);
            return 1;
        }
        value++;
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = value;
        } else if (strncmp(argv[i], "syscall=", 8) == 0) {
            mark_syscall = strtoll(value, NULL, 0);
        } else if (strncmp(argv[i], "magic=", 6) == 0) {
            mark_magic = strtoull(value, NULL, 0);
        } else {
            fprintf(stderr, "qemu_count: unknown argument %s\n", argv[i]);
            return 1;
        }
    }
    if (out_path == NULL) {
        fprintf(stderr, "qemu_count: no out=FILE argument\n");
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, write_marks, NULL);
    return 0;
}
