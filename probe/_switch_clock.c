/* The slice tracer's hot path in C: what runs at every greenlet switch.
 *
 * probe/switch_clock.py's PySwitchClock is the reference: same fields, same meaning, and it is
 * what runs where this was not compiled (no C compiler at install). Why C: greenlet calls the
 * tracer at every switch, tens of thousands of times a second in a saturated worker: 673 ns a
 * switch in Python, 243 here, in a tight loop (benchmarks/switch_cost.py). Here a switch
 * costs a clock read and three additions; Python runs only when the slow path is due (at
 * most once per refresh period, and at the end of a held slice).
 *
 * The watch (watch/arm/unwatch): a native thread, which never takes the GIL, looks at
 * start_ns and writes to an eventfd once the current slice has run `after_ns`, or at a deadline
 * that arm() sets. probe.alarm's ClockAlarm waits on that eventfd in the monitor's watchdog.
 * At each of its other wakes (every `after_ns` at most) it reads the hub thread's clocks (CPU
 * time, time waiting for a CPU: probe.sched) into a ring, which the slice tracer uses as the
 * reading before a held slice began (snapshot_before). Why: the Python alternative, a kernel
 * timer the hub pushes back and the clocks the hub reads itself, hundreds of times a second,
 * are system calls in the hub's thread, and those cost a saturated worker far more than their
 * own few µs here (benchmarks/syscall_cost.py).
 *
 * Built against the stable ABI of Python 3.11 (one wheel for 3.11 and later).
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Slices are counted in buckets, with no allocation and no Python: 1.024 µs wide up to
   2^20 ns (~1 ms), then 512 per power of two (0.2% wide) up to 2^40 ns (~18 min); longer ones
   go to Python (`large`). Why so far: saturated workers that share a core run many slices of
   several ms (the kernel gives the core to another process mid-slice), and recording each in
   an HdrHistogram, in Python, was ~1% of such a worker's samples. */
#define LINEAR_SHIFT 10
#define LOG_FROM 20
#define LOG_TO 40
#define SUB_BITS 9
#define LINEAR_BUCKETS (1 << (LOG_FROM - LINEAR_SHIFT))
#define BUCKETS (LINEAR_BUCKETS + ((LOG_TO - LOG_FROM) << SUB_BITS))

static Py_ssize_t bucket_of(long long wall)
{
    if (wall < (1LL << LOG_FROM))
        return wall > 0 ? wall >> LINEAR_SHIFT : 0;
    int e = 63 - __builtin_clzll((unsigned long long)wall); /* 2^e <= wall < 2^(e+1) */
    return LINEAR_BUCKETS + ((Py_ssize_t)(e - LOG_FROM) << SUB_BITS) +
           ((wall >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1));
}

static void bucket_range(Py_ssize_t i, long long *lower, long long *width)
{
    if (i < LINEAR_BUCKETS) {
        *lower = (long long)i << LINEAR_SHIFT;
        *width = 1LL << LINEAR_SHIFT;
        return;
    }
    int e = LOG_FROM + (int)((i - LINEAR_BUCKETS) >> SUB_BITS);
    *width = 1LL << (e - SUB_BITS);
    *lower = (1LL << e) + (((i - LINEAR_BUCKETS) & ((1 << SUB_BITS) - 1)) * *width);
}

#define SNAPSHOTS 8 /* a held slice's reading before it began survives the few taken in it */

typedef struct {
    long long at, cpu, runq; /* monotonic ns; the hub thread's CPU ns, ns waiting for a CPU */
} Snapshot;

typedef struct {
    PyObject_HEAD
    long long start_ns;  /* when the current slice began: its name */
    long long busy_ns;   /* greenlets' slices (not the hub's own runs) */
    long long next_read; /* when the slow path is next due */
    long long threshold_ns; /* and at the end of every slice this long */
    PyObject *hub;       /* the hub greenlet: its own runs are not counted */
    PyObject *slow;      /* slow((origin, target), started, now, wall) */
    PyObject *large;     /* large(µs): a slice of 2^LOG_TO ns or more */
    PyObject *previous;  /* the tracer installed before ours, or None */
    unsigned long long counts[BUCKETS];
    /* the watch: read by its thread without the GIL (atomics), written by Python */
    long long after_ns;    /* fire once the current slice has run this long (0: never) */
    long long deadline_ns; /* and at this time (0: none), once */
    int watch_fd;          /* an eventfd: 1 is written at each firing */
    int watching;          /* the thread runs until this is 0 */
    pid_t watch_pid;       /* the process that started it (a forked child has no thread) */
    pthread_t thread;
    pthread_mutex_t lock;  /* guards only the sleep: arm() and unwatch() wake the thread */
    pthread_cond_t wake;
    /* the hub thread's clocks, read by the watch's thread */
    clockid_t hub_cpu;
    int schedstat_fd;          /* the hub thread's /proc/thread-self/schedstat, or -1 */
    unsigned long long seq;    /* a seqlock: odd while a snapshot is written */
    unsigned long long taken;  /* snapshots written so far */
    Snapshot snaps[SNAPSHOTS];
} SwitchClock;

static long long monotonic_ns(void)
{
    /* CLOCK_MONOTONIC: the clock of time.perf_counter_ns() on Linux, which the Python side
       compares start_ns with. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void replace(PyObject **field, PyObject *value)
{
    PyObject *old = *field;
    Py_INCREF(value);
    *field = value;
    Py_XDECREF(old);
}

static PyObject *clock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *op = PyType_GenericNew(type, args, kwargs);
    if (op == NULL)
        return NULL;
    SwitchClock *self = (SwitchClock *)op;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadlines are monotonic_ns() */
    pthread_cond_init(&self->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&self->lock, NULL);
    self->schedstat_fd = -1;
    return op;
}

static int clock_init(PyObject *op, PyObject *args, PyObject *kwargs)
{
    SwitchClock *self = (SwitchClock *)op;
    static char *names[] = {"hub", "slow", "large", NULL};
    PyObject *hub, *slow, *large;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO", names, &hub, &slow, &large))
        return -1;
    replace(&self->hub, hub);
    replace(&self->slow, slow);
    replace(&self->large, large);
    replace(&self->previous, Py_None);
    self->start_ns = self->next_read = monotonic_ns();
    self->threshold_ns = LLONG_MAX;
    self->busy_ns = 0;
    memset(self->counts, 0, sizeof self->counts);
    return 0;
}

static PyObject *clock_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    SwitchClock *self = (SwitchClock *)op;
    long long now = monotonic_ns();
    PyObject *event, *pair, *origin, *result;
    if (!PyArg_UnpackTuple(args, "SwitchClock", 2, 2, &event, &pair))
        return NULL;
    origin = PyTuple_GetItem(pair, 0); /* borrowed; ("switch"|"throw", (origin, target)) */
    if (origin == NULL)
        return NULL;
    long long started = self->start_ns;
    long long wall = now - started;
    if (origin != self->hub) {
        self->busy_ns += wall;
        if (wall < (1LL << LOG_TO)) {
            self->counts[bucket_of(wall)]++;
        } else {
            result = PyObject_CallFunction(self->large, "L", wall / 1000);
            if (result == NULL)
                return NULL;
            Py_DECREF(result);
        }
    }
    if (now >= self->next_read || wall >= self->threshold_ns) {
        result = PyObject_CallFunction(self->slow, "OLLL", pair, started, now, wall);
        if (result == NULL)
            return NULL;
        Py_DECREF(result);
    }
    __atomic_store_n(&self->start_ns, now, __ATOMIC_RELAXED);
    if (self->previous != NULL && self->previous != Py_None)
        return PyObject_Call(self->previous, args, kwargs);
    Py_RETURN_NONE;
}

static PyObject *clock_buckets(PyObject *op, PyObject *unused)
{
    /* [(lower ns, width ns, count)] of the buckets that counted a slice. */
    SwitchClock *self = (SwitchClock *)op;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < BUCKETS; i++) {
        if (!self->counts[i])
            continue;
        long long lower, width;
        bucket_range(i, &lower, &width);
        PyObject *item = Py_BuildValue("(LLK)", lower, width, self->counts[i]);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

static PyObject *clock_counted(PyObject *op, PyObject *unused)
{
    SwitchClock *self = (SwitchClock *)op;
    unsigned long long total = 0;
    for (Py_ssize_t i = 0; i < BUCKETS; i++)
        total += self->counts[i];
    return PyLong_FromUnsignedLongLong(total);
}

static PyObject *clock_clear(PyObject *op, PyObject *unused)
{
    SwitchClock *self = (SwitchClock *)op;
    memset(self->counts, 0, sizeof self->counts);
    self->busy_ns = 0;
    Py_RETURN_NONE;
}

static long long load(long long *field)
{
    return __atomic_load_n(field, __ATOMIC_RELAXED);
}

static void take_snapshot(SwitchClock *self)
{
    Snapshot snap = {.at = monotonic_ns(), .cpu = 0, .runq = 0};
    struct timespec ts;
    if (clock_gettime(self->hub_cpu, &ts) < 0)
        return;
    snap.cpu = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (self->schedstat_fd >= 0) { /* "<ns on a CPU> <ns waiting for one> <timeslices>" */
        char buf[128];
        ssize_t n = pread(self->schedstat_fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            return;
        buf[n] = 0;
        char *end;
        strtoull(buf, &end, 10);
        snap.runq = (long long)strtoull(end, NULL, 10);
    }
    __atomic_fetch_add(&self->seq, 1, __ATOMIC_ACQ_REL);
    self->snaps[self->taken % SNAPSHOTS] = snap;
    self->taken++;
    __atomic_fetch_add(&self->seq, 1, __ATOMIC_ACQ_REL);
}

static void *watch_main(void *arg)
{
    SwitchClock *self = arg;
    long long fired_for = -1; /* the slice last fired for (by its start) */
    pthread_mutex_lock(&self->lock);
    while (__atomic_load_n(&self->watching, __ATOMIC_RELAXED)) {
        long long now = monotonic_ns(), start = load(&self->start_ns);
        long long after = load(&self->after_ns), deadline = load(&self->deadline_ns);
        int fire = 0;
        if (deadline && now >= deadline) {
            __atomic_compare_exchange_n(&self->deadline_ns, &deadline, 0, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED);
            fire = 1;
        }
        if (after > 0 && start != fired_for && now - start >= after) {
            fired_for = start;
            fire = 1;
        }
        if (fire) {
            uint64_t one = 1;
            if (write(self->watch_fd, &one, sizeof one) < 0 && errno == EBADF)
                break; /* closed under us: nobody waits any more */
            continue;
        }
        if (start != fired_for) /* not in a slice held so long: a reading before later ones */
            take_snapshot(self);
        /* Next look: when this slice would be `after` old, else `after` from now (a new slice
           may begin meanwhile, and be held); a deadline sooner. */
        long long next = now + (after > 0 ? after : 10000000LL);
        if (after > 0 && start != fired_for && start + after < next)
            next = start + after;
        deadline = load(&self->deadline_ns);
        if (deadline && deadline < next)
            next = deadline;
        struct timespec ts = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL};
        pthread_cond_timedwait(&self->wake, &self->lock, &ts);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

static PyObject *clock_watch(PyObject *op, PyObject *args)
{
    /* watch(fd, after_ns): start the thread (once). */
    SwitchClock *self = (SwitchClock *)op;
    int fd;
    long long after;
    if (!PyArg_ParseTuple(args, "iL", &fd, &after))
        return NULL;
    if (self->watching) {
        PyErr_SetString(PyExc_RuntimeError, "already watching");
        return NULL;
    }
    /* The caller is the hub's thread: its clocks are what the thread will read. */
    if (pthread_getcpuclockid(pthread_self(), &self->hub_cpu) != 0) {
        PyErr_SetString(PyExc_OSError, "no CPU clock for this thread");
        return NULL;
    }
    if (self->schedstat_fd < 0)
        self->schedstat_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    self->taken = 0;
    self->watch_fd = fd;
    self->after_ns = after;
    self->deadline_ns = 0;
    self->watching = 1;
    self->watch_pid = getpid();
    int err = pthread_create(&self->thread, NULL, watch_main, self);
    if (err) {
        self->watching = 0;
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static void signal_watch(SwitchClock *self)
{
    pthread_mutex_lock(&self->lock);
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
}

static PyObject *clock_arm(PyObject *op, PyObject *arg)
{
    /* arm(ns): fire `ns` from now too (0: none). */
    SwitchClock *self = (SwitchClock *)op;
    long long after = PyLong_AsLongLong(arg);
    if (after == -1 && PyErr_Occurred())
        return NULL;
    __atomic_store_n(&self->deadline_ns, after > 0 ? monotonic_ns() + after : 0,
                     __ATOMIC_RELAXED);
    if (self->watching)
        signal_watch(self);
    Py_RETURN_NONE;
}

static void stop_watch(SwitchClock *self)
{
    if (!self->watching)
        return;
    __atomic_store_n(&self->watching, 0, __ATOMIC_RELAXED);
    if (self->watch_pid != getpid())
        return; /* forked: the thread stayed in the parent */
    signal_watch(self);
    pthread_join(self->thread, NULL);
}

static PyObject *clock_unwatch(PyObject *op, PyObject *unused)
{
    /* Stop the thread and wait for it (without the GIL): the fd is then free to close. */
    SwitchClock *self = (SwitchClock *)op;
    Py_BEGIN_ALLOW_THREADS
    stop_watch(self);
    Py_END_ALLOW_THREADS
    if (self->schedstat_fd >= 0) {
        close(self->schedstat_fd);
        self->schedstat_fd = -1;
    }
    Py_RETURN_NONE;
}

static PyObject *snapshot_tuple(const Snapshot *snap)
{
    return Py_BuildValue("(LLL)", snap->at, snap->cpu, snap->runq);
}

static PyObject *clock_snapshot_before(PyObject *op, PyObject *arg)
{
    /* snapshot_before(t): (at, cpu, runq) of the latest reading taken at t or before, or
       None (none yet, or all of them since). t = 0: the latest, whenever it was taken. */
    SwitchClock *self = (SwitchClock *)op;
    long long t = PyLong_AsLongLong(arg);
    if (t == -1 && PyErr_Occurred())
        return NULL;
    Snapshot snaps[SNAPSHOTS];
    unsigned long long before, after, taken;
    do { /* the seqlock: copy until no write overlapped the copy */
        before = __atomic_load_n(&self->seq, __ATOMIC_ACQUIRE);
        taken = self->taken;
        memcpy(snaps, self->snaps, sizeof snaps);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        after = __atomic_load_n(&self->seq, __ATOMIC_ACQUIRE);
    } while (before != after || (before & 1));
    for (unsigned long long i = 0; i < taken && i < SNAPSHOTS; i++) {
        const Snapshot *snap = &snaps[(taken - 1 - i) % SNAPSHOTS];
        if (t == 0 || snap->at <= t)
            return snapshot_tuple(snap);
    }
    Py_RETURN_NONE;
}

static PyObject *clock_entry(PyObject *op, void *closure)
{
    Py_INCREF(op); /* what greenlet.settrace is given: the object itself (its tp_call) */
    return op;
}

static int clock_traverse(PyObject *op, visitproc visit, void *arg)
{
    SwitchClock *self = (SwitchClock *)op;
    Py_VISIT(self->hub);
    Py_VISIT(self->slow);
    Py_VISIT(self->large);
    Py_VISIT(self->previous);
    Py_VISIT(Py_TYPE(op)); /* a heap type */
    return 0;
}

static int clock_clear_refs(PyObject *op)
{
    SwitchClock *self = (SwitchClock *)op;
    Py_CLEAR(self->hub);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->large);
    Py_CLEAR(self->previous);
    return 0;
}

static void clock_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    stop_watch((SwitchClock *)op);
    if (((SwitchClock *)op)->schedstat_fd >= 0)
        close(((SwitchClock *)op)->schedstat_fd);
    pthread_cond_destroy(&((SwitchClock *)op)->wake);
    pthread_mutex_destroy(&((SwitchClock *)op)->lock);
    clock_clear_refs(op);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(op);
    Py_DECREF(type);
}

static PyMemberDef clock_members[] = {
    {"start_ns", T_LONGLONG, offsetof(SwitchClock, start_ns), 0, NULL},
    {"busy_ns", T_LONGLONG, offsetof(SwitchClock, busy_ns), 0, NULL},
    {"next_read", T_LONGLONG, offsetof(SwitchClock, next_read), 0, NULL},
    {"after_ns", T_LONGLONG, offsetof(SwitchClock, after_ns), 0, NULL},
    {"threshold_ns", T_LONGLONG, offsetof(SwitchClock, threshold_ns), 0, NULL},
    {"hub", T_OBJECT, offsetof(SwitchClock, hub), READONLY, NULL},
    {"large", T_OBJECT, offsetof(SwitchClock, large), 0, NULL},
    {"previous", T_OBJECT, offsetof(SwitchClock, previous), 0, NULL},
    {NULL},
};

static PyMethodDef clock_methods[] = {
    {"buckets", clock_buckets, METH_NOARGS, NULL},
    {"counted", clock_counted, METH_NOARGS, NULL},
    {"clear", clock_clear, METH_NOARGS, NULL},
    {"watch", clock_watch, METH_VARARGS, NULL},
    {"arm", clock_arm, METH_O, NULL},
    {"unwatch", clock_unwatch, METH_NOARGS, NULL},
    {"snapshot_before", clock_snapshot_before, METH_O, NULL},
    {NULL},
};

static PyGetSetDef clock_getset[] = {
    {"entry", clock_entry, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot clock_slots[] = {
    {Py_tp_init, clock_init},
    {Py_tp_call, clock_call},
    {Py_tp_dealloc, clock_dealloc},
    {Py_tp_traverse, clock_traverse},
    {Py_tp_clear, clock_clear_refs},
    {Py_tp_members, clock_members},
    {Py_tp_methods, clock_methods},
    {Py_tp_getset, clock_getset},
    {Py_tp_new, clock_new},
    {0, NULL},
};

static PyType_Spec clock_spec = {
    .name = "probe._switch_clock.SwitchClock",
    .basicsize = sizeof(SwitchClock),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = clock_slots,
};

static int module_exec(PyObject *module)
{
    PyObject *type = PyType_FromSpec(&clock_spec);
    if (type == NULL)
        return -1;
    if (PyModule_AddObject(module, "SwitchClock", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    if (PyModule_AddIntConstant(module, "LINEAR_SHIFT", LINEAR_SHIFT) < 0 ||
        PyModule_AddIntConstant(module, "LOG_FROM", LOG_FROM) < 0 ||
        PyModule_AddIntConstant(module, "LOG_TO", LOG_TO) < 0 ||
        PyModule_AddIntConstant(module, "SUB_BITS", SUB_BITS) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "probe._switch_clock",
    .m_doc = "The slice tracer's hot path (probe/switch_clock.py is its reference).",
    .m_size = 0,
    .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__switch_clock(void)
{
    return PyModuleDef_Init(&module_def);
}
