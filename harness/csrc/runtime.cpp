// The harness runtime: fibers for CUDA threads, block barriers, warp collectives,
// bounds errors and the per-warp coalescing count of global memory traffic.
//
// One launch at a time in the whole process (static __shared__ arrays are process-wide,
// see cuda_emu.h). Blocks run one after another on the calling OS thread; within a block
// every CUDA thread is a fiber (fiber.h) that runs until it waits (barrier, warp
// collective) or exits. The scheduler resumes fibers in rounds, in an order the launch
// picks (forward, reverse, or shuffled per round), so code that relies on an order the
// hardware does not promise gets different results under different schedules.

#include "emu_abi.h"
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <tuple>


namespace emu {

thread_local Thread* current = nullptr;
thread_local const Block* current_block = nullptr;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kCanaryBytes = 64;
constexpr unsigned char kCanary = 0xA5;
constexpr size_t kStaticSharedBytes = 48 * 1024;  // CUDA's limit for static __shared__

struct Fiber {
    Context ctx;
    Thread thread;
    bool done = false;
    char* stack = nullptr;
};

struct WarpState {
    uint32_t existing = 0;  // lanes that exist (partial last warp)
    uint32_t exited = 0;
    uint32_t arrived = 0;
    uint32_t mask = 0;
    const char* op = nullptr;
    uint64_t generation = 0;
    uint64_t values[32] = {};
    uint64_t results[2][32] = {};
};

struct Launch {
    Context scheduler;
    EmuTrampoline trampoline = nullptr;
    const EmuArg* args = nullptr;
    std::vector<Buffer> buffers;
    EmuBufferDesc* descs = nullptr;
    std::vector<Fiber> fibers;
    std::vector<WarpState> warps;
    Block block;
    uint32_t threads = 0;
    uint32_t barrier_arrived = 0;
    uint64_t barrier_generation = 0;
    uint32_t exited = 0;
    uint64_t events = 0;
    Fiber* running = nullptr;
    uint64_t id = 0;
    alignas(16) unsigned char static_shared[kStaticSharedBytes];
    size_t static_used = 0;
    unsigned char* dynamic_shared = nullptr;
    size_t dynamic_bytes = 0;
    bool failed = false;
    int error_kind = EMU_OK;
    std::string error;
};

std::mutex launch_mutex;
Launch* L = nullptr;
uint64_t launches = 0;
std::vector<char*> stack_pool;

char* stack_for(size_t i) {
    while (stack_pool.size() <= i) {
        const size_t page = size_t(sysconf(_SC_PAGESIZE));
        void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            std::fprintf(stderr, "sparta-harness: cannot map a fiber stack\n");
            std::abort();
        }
        mprotect(p, page, PROT_NONE);  // guard page below the stack: overflow faults
        stack_pool.push_back(static_cast<char*>(p) + page);
    }
    return stack_pool[i];
}

std::string where() {
    char buf[160];
    if (L->running) {
        const uint3 t = L->running->thread.idx;
        std::snprintf(buf, sizeof buf, "thread (%u,%u,%u) of block (%u,%u,%u)", t.x, t.y, t.z, L->block.idx.x,
                      L->block.idx.y, L->block.idx.z);
    } else {
        std::snprintf(buf, sizeof buf, "block (%u,%u,%u)", L->block.idx.x, L->block.idx.y, L->block.idx.z);
    }
    return buf;
}

std::string format(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

// Stops the launch: records the first error and parks the running fiber for good.
[[noreturn]] void fail(int kind, const std::string& what) {
    if (!L->failed) {
        L->failed = true;
        L->error_kind = kind;
        L->error = what + " (" + where() + ")";
    }
    for (;;) context_switch(&L->running->ctx, &L->scheduler);
}

void yield() { context_switch(&L->running->ctx, &L->scheduler); }

void thread_exit() {
    Fiber* f = L->running;
    const uint32_t lane = f->thread.linear & 31u;
    WarpState& w = L->warps[f->thread.linear / 32];
    if (L->barrier_arrived > 0)
        fail(EMU_ERR_BARRIER, format("thread exited while %u threads wait at __syncthreads()", L->barrier_arrived));
    if (w.arrived != 0 && (w.mask >> lane) & 1u)
        fail(EMU_ERR_WARP, format("lane %u exited while lanes 0x%08x wait in %s with mask 0x%08x", lane, w.arrived,
                                  w.op, w.mask));
    w.exited |= 1u << lane;
    ++L->exited;
    ++L->events;
    f->done = true;
}

// A fiber's body; it never returns (the scheduler does not resume a finished fiber).
void fiber_main() {
    L->trampoline(L->args, L->buffers.data());
    thread_exit();
    for (;;) yield();
}

std::string describe_waits() {
    std::string s;
    if (L->barrier_arrived > 0) s += format("%u threads wait at __syncthreads(); ", L->barrier_arrived);
    for (size_t i = 0; i < L->warps.size(); ++i) {
        const WarpState& w = L->warps[i];
        if (w.arrived)
            s += format("warp %zu: lanes 0x%08x wait in %s with mask 0x%08x; ", i, w.arrived, w.op, w.mask);
    }
    return s;
}

void run_block(uint32_t schedule, uint64_t seed, uint64_t block_linear) {
    std::memset(L->static_shared, 0xFF, L->static_used);
    std::memset(L->dynamic_shared, 0xFF, L->dynamic_bytes);
    std::memset(L->dynamic_shared + L->dynamic_bytes, kCanary, kCanaryBytes);

    const dim3 d = L->block.dim;
    for (uint32_t i = 0; i < L->threads; ++i) {
        Fiber& f = L->fibers[i];
        f.done = false;
        f.thread.linear = i;
        f.thread.idx = uint3{i % d.x, (i / d.x) % d.y, i / (d.x * d.y)};
        f.thread.log.clear();
        context_init(&f.ctx, f.stack, kStackBytes, fiber_main);
    }
    for (size_t w = 0; w < L->warps.size(); ++w) {
        WarpState& ws = L->warps[w];
        ws = WarpState{};
        const uint32_t lanes = std::min<uint32_t>(32, L->threads - uint32_t(w) * 32);
        ws.existing = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    }
    L->barrier_arrived = 0;
    L->exited = 0;

    std::vector<uint32_t> order(L->threads);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + block_linear);
    for (uint64_t round = 0;; ++round) {
        std::iota(order.begin(), order.end(), 0u);
        if (schedule == EMU_SCHEDULE_REVERSE) std::reverse(order.begin(), order.end());
        if (schedule == EMU_SCHEDULE_SHUFFLED) std::shuffle(order.begin(), order.end(), rng);
        const uint64_t before = L->events;
        bool live = false;
        for (uint32_t i : order) {
            Fiber& f = L->fibers[i];
            if (f.done) continue;
            L->running = &f;
            current = &f.thread;
            context_switch(&L->scheduler, &f.ctx);
            L->running = nullptr;
            if (L->failed) return;
            live |= !f.done;
        }
        if (!live) break;
        if (L->events == before) {
            L->failed = true;
            L->error_kind = EMU_ERR_DEADLOCK;
            L->error = "deadlock: " + describe_waits() + "(" + where() + ")";
            return;
        }
    }
    for (size_t i = 0; i < kCanaryBytes; ++i) {
        if (L->dynamic_shared[L->dynamic_bytes + i] != kCanary) {
            L->failed = true;
            L->error_kind = EMU_ERR_SHARED_BOUNDS;
            L->error = format("write past the end of dynamic shared memory (%zu bytes) (", L->dynamic_bytes) +
                       where() + ")";
            return;
        }
    }
}

// Approximates the hardware's coalescing of one warp instruction: the k-th access of
// each lane *to the same buffer with the same kind* (load, store, atomic) is taken to
// be the same instruction, and the distinct 32-byte sectors of each such group are
// counted. Numbering per buffer and kind (not over all accesses) keeps lanes aligned
// when a tail guard makes some lanes skip accesses to another buffer.
struct SectorKey {
    uint32_t buffer;
    uint32_t kind;
    uint64_t index;
    uint64_t sector;
    bool operator<(const SectorKey& o) const {
        return std::tie(buffer, kind, index, sector) < std::tie(o.buffer, o.kind, o.index, o.sector);
    }
    bool operator==(const SectorKey& o) const {
        return buffer == o.buffer && kind == o.kind && index == o.index && sector == o.sector;
    }
};

void count_traffic() {
    std::vector<SectorKey> keys;
    std::vector<uint64_t> seen(L->buffers.size() * 3);
    for (size_t w = 0; w < L->warps.size(); ++w) {
        const uint32_t first = uint32_t(w) * 32;
        const uint32_t last = std::min<uint32_t>(L->threads, first + 32);
        keys.clear();
        for (uint32_t i = first; i < last; ++i) {
            std::fill(seen.begin(), seen.end(), 0);
            for (const Access& a : L->fibers[i].thread.log) {
                EmuBufferDesc& d = L->descs[a.buffer];
                const uint64_t index = seen[a.buffer * 3 + a.kind]++;
                const uint64_t at = d.origin_bytes + a.byte_offset;
                const uint64_t s0 = at / 32, s1 = (at + a.bytes - 1) / 32;
                for (uint64_t s = s0; s <= s1; ++s) keys.push_back(SectorKey{a.buffer, a.kind, index, s});
                (a.kind == LOAD ? d.loads : a.kind == STORE ? d.stores : d.atomics) += 1;
                if (a.kind != LOAD && d.written) {
                    const uint64_t e0 = a.byte_offset / d.elem_bytes;
                    const uint64_t e1 = (a.byte_offset + a.bytes - 1) / d.elem_bytes;
                    for (uint64_t e = e0; e <= e1; ++e) d.written[e] = 1;
                }
            }
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        for (const SectorKey& k : keys) {
            EmuBufferDesc& d = L->descs[k.buffer];
            (k.kind == LOAD ? d.load_sectors : k.kind == STORE ? d.store_sectors : d.atomic_sectors) += 1;
        }
    }
}

}  // namespace

void syncthreads() {
    if (L->exited > 0)
        fail(EMU_ERR_BARRIER, format("__syncthreads() reached after %u threads of the block exited", L->exited));
    const uint64_t generation = L->barrier_generation;
    ++L->barrier_arrived;
    ++L->events;
    if (L->barrier_arrived == L->threads) {
        L->barrier_arrived = 0;
        ++L->barrier_generation;
    }
    do yield();
    while (L->barrier_generation == generation);
}

const uint64_t* warp_collective(const char* op, unsigned mask, uint64_t value) {
    const uint32_t lane = current->linear & 31u;
    WarpState& w = L->warps[current->linear / 32];
    if (!((mask >> lane) & 1u)) fail(EMU_ERR_WARP, format("lane %u calls %s with mask 0x%08x that omits it", lane, op, mask));
    if (mask & ~w.existing)
        fail(EMU_ERR_WARP, format("%s mask 0x%08x names lanes that do not exist (warp has 0x%08x)", op, mask, w.existing));
    if (mask & w.exited) fail(EMU_ERR_WARP, format("%s mask 0x%08x names exited lanes 0x%08x", op, mask, w.exited & mask));
    if (w.arrived == 0) {
        w.mask = mask;
        w.op = op;
    } else if (w.mask != mask || std::strcmp(w.op, op) != 0) {
        fail(EMU_ERR_WARP, format("lane %u calls %s with mask 0x%08x while lanes 0x%08x wait in %s with mask 0x%08x", lane,
                                  op, mask, w.arrived, w.op, w.mask));
    }
    w.values[lane] = value;
    w.arrived |= 1u << lane;
    ++L->events;
    const uint64_t generation = w.generation;
    if (w.arrived == mask) {
        std::memcpy(w.results[generation & 1], w.values, sizeof w.values);
        w.arrived = 0;
        ++w.generation;
    } else {
        do yield();
        while (w.generation == generation);
    }
    return w.results[generation & 1];
}

void syncwarp(unsigned mask) { warp_collective("__syncwarp", mask, 0); }

unsigned char* dynamic_shared_base() { return L->dynamic_shared; }

uint64_t launch_id() { return L->id; }

unsigned char* static_shared_base() { return L->static_shared; }

// Static __shared__ variables get their place in the arena when a thread first reaches
// their declaration; it is poisoned from then on at every block start.
size_t allocate_static_shared(size_t bytes, size_t align) {
    const size_t offset = (L->static_used + align - 1) / align * align;
    if (offset + bytes > kStaticSharedBytes)
        fail(EMU_ERR_USAGE, format("static __shared__ memory above %zu bytes", kStaticSharedBytes));
    std::memset(L->static_shared + L->static_used, 0xFF, offset + bytes - L->static_used);
    L->static_used = offset + bytes;
    return offset;
}

void fatal(const char* what) { fail(EMU_ERR_USAGE, what); }

void out_of_bounds(const Buffer* b, int64_t index, AccessKind kind) {
    static const char* names[] = {"read", "write", "atomic"};
    fail(EMU_ERR_OUT_OF_BOUNDS, format("out-of-bounds %s of buffer `%s` at element %lld (length %llu)", names[kind],
                                       b->name, (long long)index, (unsigned long long)b->len));
}

}  // namespace emu

extern "C" int emu_launch(EmuTrampoline trampoline, const EmuLaunchCfg* cfg, const EmuArg* args, EmuBufferDesc* bufs,
                          uint32_t nbufs, char* error, size_t error_len) {
    using namespace emu;
    std::lock_guard<std::mutex> lock(launch_mutex);
    std::unique_ptr<Launch> owned(new Launch());
    Launch& launch = *owned;
    launch.id = ++launches;
    L = &launch;
    launch.trampoline = trampoline;
    launch.args = args;
    launch.descs = bufs;
    for (uint32_t i = 0; i < nbufs; ++i)
        launch.buffers.push_back(Buffer{bufs[i].data, bufs[i].len, bufs[i].elem_bytes, i, bufs[i].name});
    const dim3 grid(cfg->grid[0], cfg->grid[1], cfg->grid[2]);
    const dim3 dim(cfg->block[0], cfg->block[1], cfg->block[2]);
    launch.threads = dim.x * dim.y * dim.z;
    launch.fibers.resize(launch.threads);
    for (uint32_t i = 0; i < launch.threads; ++i) launch.fibers[i].stack = stack_for(i);
    launch.warps.resize((launch.threads + 31) / 32);
    launch.dynamic_bytes = cfg->shared_bytes;
    std::vector<unsigned char> dynamic(cfg->shared_bytes + kCanaryBytes + 16);
    launch.dynamic_shared = dynamic.data() + (16 - reinterpret_cast<uintptr_t>(dynamic.data()) % 16) % 16;

    const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
    for (uint64_t n = 0; n < blocks && !launch.failed; ++n) {
        const uint64_t b = cfg->schedule == EMU_SCHEDULE_FORWARD ? n : blocks - 1 - n;
        launch.block = Block{uint3{uint32_t(b % grid.x), uint32_t((b / grid.x) % grid.y), uint32_t(b / (uint64_t(grid.x) * grid.y))},
                             dim, grid};
        current_block = &launch.block;
        run_block(cfg->schedule, cfg->seed, b);
        if (!launch.failed) count_traffic();
    }
    current = nullptr;
    current_block = nullptr;
    L = nullptr;
    if (launch.failed) {
        std::snprintf(error, error_len, "%s", launch.error.c_str());
        return launch.error_kind;
    }
    return EMU_OK;
}
