// CUDA emulation for running sparta's kernels/*.cu on the CPU (sparta-harness).
//
// Included by kernels/common.cuh when SPARTA_HOST_HARNESS is defined. Each CUDA thread
// is a fiber; all fibers of one block run on the launching OS thread, cooperatively,
// and blocks run one after another. A fiber runs until it reaches a barrier (block or
// warp) or exits, so the order in which the scheduler picks fibers decides which
// thread's writes another sees: a missing __syncthreads() or __syncwarp() shows up as
// stale or poisoned (NaN) data. See docs/harness.md.
//
// Shared memory: harness/build.rs rewrites each declaration `__shared__ T name[N];` to
// EMU_STATIC_SHARED(T, name, [N]): `name` becomes a reference into the launch's shared
// arena, at an offset a function-local static slot remembers for the launch. Every
// block of the launch uses the same arena (one block runs at a time in the whole
// process: launches hold a global lock), and the runtime fills it with 0xFF bytes (NaN
// for f32/f16/bf16) at the start of each block, so nothing survives from the previous
// block and uninitialized reads give NaN. `extern __shared__ T name[];` likewise becomes
// EMU_DYNAMIC_SHARED(T, name), a pointer to the launch's dynamic shared memory.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef EMU_SCAN_PASS
// build.rs preprocesses each kernel file once to find its extern "C" entry points.
#define __global__ __emu_global__
#else
#define __global__
#endif
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Only build.rs's rewrites may declare shared memory; anything else fails to compile.
#define __shared__ __shared___declarations_must_be_one_per_line_for_the_harness
#define EMU_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::emu::dynamic_shared_base())
#define EMU_STATIC_SHARED(T, name, dims)             \
    static ::emu::SharedSlot emu_shared_slot_##name; \
    T(&name) dims = ::emu::static_shared<T dims>(emu_shared_slot_##name)

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

enum AccessKind : uint8_t { LOAD = 0, STORE = 1, ATOMIC = 2 };

// One global-memory access of one thread, in program order.
struct Access {
    uint64_t byte_offset;
    uint32_t buffer;
    uint16_t bytes;
    uint8_t kind;
};

// A global buffer as the kernel sees it (owned by the Rust side).
struct Buffer {
    unsigned char* data;
    uint64_t len;        // elements
    uint32_t elem_bytes;
    uint32_t id;         // index in the launch's buffer list
    const char* name;
};

// The running CUDA thread.
struct Thread {
    uint3 idx;
    uint32_t linear;
    std::vector<Access> log;
};

struct Block {
    uint3 idx;
    dim3 dim;
    dim3 grid;
};

extern thread_local Thread* current;
extern thread_local const Block* current_block;

// Where one static __shared__ variable lives in the current launch's arena.
struct SharedSlot {
    uint64_t launch = 0;
    size_t offset = 0;
};

// Runtime hooks (runtime.cpp).
uint64_t launch_id();
size_t allocate_static_shared(size_t bytes, size_t align);
unsigned char* static_shared_base();
void syncthreads();
void syncwarp(unsigned mask);
const uint64_t* warp_collective(const char* op, unsigned mask, uint64_t value);
unsigned char* dynamic_shared_base();
[[noreturn]] void fatal(const char* what);
void out_of_bounds(const Buffer* b, int64_t index, AccessKind kind);

template <typename A> inline A& static_shared(SharedSlot& slot) {
    if (slot.launch != launch_id()) {
        slot.offset = allocate_static_shared(sizeof(A), alignof(A));
        slot.launch = launch_id();
    }
    return *reinterpret_cast<A*>(static_shared_base() + slot.offset);
}

inline void record(const Buffer* b, int64_t index, unsigned bytes, AccessKind kind) {
    current->log.push_back(Access{uint64_t(index) * b->elem_bytes, b->id, uint16_t(bytes), uint8_t(kind)});
}

inline bool in_bounds(const Buffer* b, int64_t index, int64_t count, AccessKind kind) {
    if (index < 0 || uint64_t(index) + uint64_t(count) > b->len) {
        out_of_bounds(b, index < 0 || uint64_t(index) >= b->len ? index : int64_t(b->len), kind);
        return false;
    }
    return true;
}

// What an out-of-bounds read returns (the launch fails anyway): NaN for floats.
template <typename V> inline V poison_value() {
    V v;
    std::memset(static_cast<void*>(&v), 0xFF, sizeof(V));
    return v;
}

template <typename V> inline V load(const Buffer* b, int64_t i) {
    if (!in_bounds(b, i, 1, LOAD)) return poison_value<V>();
    record(b, i, sizeof(V), LOAD);
    V v;
    std::memcpy(static_cast<void*>(&v), b->data + uint64_t(i) * sizeof(V), sizeof(V));
    return v;
}

template <typename V> inline void store(const Buffer* b, int64_t i, V v) {
    if (!in_bounds(b, i, 1, STORE)) return;
    record(b, i, sizeof(V), STORE);
    std::memcpy(b->data + uint64_t(i) * sizeof(V), static_cast<const void*>(&v), sizeof(V));
}

// Address of one global element (`&y[i]`), for atomics.
template <typename V> struct GlobalAddr {
    const Buffer* buf;
    int64_t index;
};

// Proxy for `y[i]` on a writable buffer: reads load, assignments store.
template <typename V> class GlobalRef {
  public:
    GlobalRef(const Buffer* b, int64_t i) : buf_(b), index_(i) {}
    operator V() const { return load<V>(buf_, index_); }
    GlobalRef& operator=(V v) {
        store<V>(buf_, index_, v);
        return *this;
    }
    GlobalRef& operator=(const GlobalRef& o) { return *this = V(o); }
    GlobalRef& operator+=(V v) { return *this = V(*this) + v; }
    GlobalRef& operator-=(V v) { return *this = V(*this) - v; }
    GlobalRef& operator*=(V v) { return *this = V(*this) * v; }
    GlobalAddr<V> operator&() const { return GlobalAddr<V>{buf_, index_}; }

  private:
    const Buffer* buf_;
    int64_t index_;
};

// GLOBAL(T): a bounds-checked pointer into one buffer that records every access.
template <typename T> class GlobalPtr {
    using V = std::remove_const_t<T>;

  public:
    GlobalPtr(const Buffer* b, int64_t offset) : buf_(b), offset_(offset) {}
    // GLOBAL(float) converts to GLOBAL(const float), not the other way.
    template <typename U, typename = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    GlobalPtr(const GlobalPtr<U>& o) : buf_(o.buffer()), offset_(o.offset()) {}

    template <typename I> auto operator[](I i) const {
        static_assert(std::is_integral_v<I>, "index a GLOBAL pointer with an integer");
        if constexpr (std::is_const_v<T>) {
            return load<V>(buf_, offset_ + int64_t(i));
        } else {
            return GlobalRef<V>(buf_, offset_ + int64_t(i));
        }
    }
    auto operator*() const { return (*this)[0]; }
    template <typename I> GlobalPtr operator+(I d) const {
        static_assert(std::is_integral_v<I>, "offset a GLOBAL pointer by an integer");
        return GlobalPtr(buf_, offset_ + int64_t(d));
    }
    template <typename I> GlobalPtr operator-(I d) const { return *this + (-int64_t(d)); }
    template <typename I> GlobalPtr& operator+=(I d) { return *this = *this + d; }
    bool operator==(const GlobalPtr& o) const { return buf_ == o.buf_ && offset_ == o.offset_; }
    bool operator!=(const GlobalPtr& o) const { return !(*this == o); }

    const Buffer* buffer() const { return buf_; }
    int64_t offset() const { return offset_; }

  private:
    const Buffer* buf_;
    int64_t offset_;
};

template <typename T> inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, static_cast<const void*>(&v), sizeof(T));
    return bits;
}
template <typename T> inline T from_bits(uint64_t bits) {
    T v;
    std::memcpy(static_cast<void*>(&v), &bits, sizeof(T));
    return v;
}

inline unsigned lane_id() { return current->linear & 31u; }

// Source lane of a shuffle, or -1 when the lane keeps its own value.
template <typename T> inline T shuffle(const char* op, unsigned mask, T v, int src, int width) {
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) fatal("shuffle width must be a power of two <= 32");
    const uint64_t* all = warp_collective(op, mask, to_bits(v));
    if (src < 0) return v;
    if (!(mask & (1u << src))) fatal("shuffle reads a lane that is not in its mask");
    return from_bits<T>(all[src]);
}

}  // namespace emu

#define threadIdx (::emu::current->idx)
#define blockIdx (::emu::current_block->idx)
#define blockDim (::emu::current_block->dim)
#define gridDim (::emu::current_block->grid)
constexpr int warpSize = 32;

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::syncwarp(mask); }

template <typename T> inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    const int lane = int(::emu::lane_id());
    const int src = (lane & ~(width - 1)) + (src_lane & (width - 1));
    return ::emu::shuffle("__shfl_sync", mask, v, src, width);
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    const int lane = int(::emu::lane_id());
    int src = lane ^ lane_mask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = -1;
    return ::emu::shuffle("__shfl_xor_sync", mask, v, src, width);
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int lane = int(::emu::lane_id());
    const int src = (lane & (width - 1)) + int(delta) < width ? lane + int(delta) : -1;
    return ::emu::shuffle("__shfl_down_sync", mask, v, src, width);
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int lane = int(::emu::lane_id());
    const int src = (lane & (width - 1)) >= int(delta) ? lane - int(delta) : -1;
    return ::emu::shuffle("__shfl_up_sync", mask, v, src, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    const uint64_t* all = ::emu::warp_collective("vote", mask, pred != 0);
    unsigned bits = 0;
    for (int l = 0; l < 32; ++l)
        if ((mask >> l) & 1u && all[l]) bits |= 1u << l;
    return bits;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(unsigned(v)); }

namespace emu {
// Keeps the value argument of an atomic out of template deduction, so that
// `atomicAdd(&y[i], 1.0)` on a float buffer converts like CUDA's overloads do.
template <typename T> struct same {
    using type = T;
};
}  // namespace emu

// Atomics: fibers of a launch never run at the same time, so a read-modify-write is atomic.
template <typename V> inline V atomicAdd(::emu::GlobalAddr<V> a, typename ::emu::same<V>::type v) {
    if (!::emu::in_bounds(a.buf, a.index, 1, ::emu::ATOMIC)) return ::emu::poison_value<V>();
    ::emu::record(a.buf, a.index, sizeof(V), ::emu::ATOMIC);
    V* p = reinterpret_cast<V*>(a.buf->data) + a.index;
    V old = *p;
    *p = old + v;
    return old;
}
template <typename V> inline V atomicMax(::emu::GlobalAddr<V> a, typename ::emu::same<V>::type v) {
    if (!::emu::in_bounds(a.buf, a.index, 1, ::emu::ATOMIC)) return ::emu::poison_value<V>();
    ::emu::record(a.buf, a.index, sizeof(V), ::emu::ATOMIC);
    V* p = reinterpret_cast<V*>(a.buf->data) + a.index;
    V old = *p;
    if (v > old) *p = v;
    return old;
}
template <typename V> inline V atomicAdd(V* p, typename ::emu::same<V>::type v) {  // shared memory
    V old = *p;
    *p = old + v;
    return old;
}
template <typename V> inline V atomicMax(V* p, typename ::emu::same<V>::type v) {
    V old = *p;
    if (v > old) *p = v;
    return old;
}

// Math: the device functions the kernels use, with host libm behind them. The fast
// intrinsics (__expf, __logf, __fdividef) are exact here and approximate on a GPU.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// f16 and bf16 storage types with exact round-to-nearest-even conversions.
struct __half {
    uint16_t bits;
};
struct __nv_bfloat16 {
    uint16_t bits;
};

inline float __half2float(__half h) {
    const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
    const uint32_t exp = (h.bits >> 10) & 0x1Fu;
    uint32_t mant = h.bits & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);  // inf / NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        int e = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            --e;
        }
        bits = sign | (uint32_t(e) << 23) | ((mant & 0x3FFu) << 13);
    }
    return ::emu::from_bits<float>(bits);
}

inline __half __float2half_rn(float f) {
    const uint32_t x = uint32_t(::emu::to_bits(f));
    const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) return __half{uint16_t(sign | 0x7E00u | ((abs >> 13) & 0x3FFu))};  // NaN
    if (abs >= 0x477FF000u) return __half{uint16_t(sign | 0x7C00u)};  // rounds to >= 65520: inf
    if (abs >= 0x38800000u) {  // normal f16
        const uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);
        return __half{uint16_t(sign | ((rounded - 0x38000000u) >> 13))};
    }
    if (abs < 0x33000000u) return __half{sign};  // below half the smallest subnormal: zero
    // Subnormal f16: mantissa with implicit bit, shifted right with round-to-nearest-even.
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14 + (113 - e) - 1 ... brings m to units of 2^-24
    const uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half_ulp = 1u << (shift - 1u);
    const uint32_t r = q + ((rem > half_ulp || (rem == half_ulp && (q & 1u))) ? 1u : 0u);
    return __half{uint16_t(sign | r)};
}
inline __half __float2half(float f) { return __float2half_rn(f); }

inline float __bfloat162float(__nv_bfloat16 b) { return ::emu::from_bits<float>(uint32_t(b.bits) << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    const uint32_t x = uint32_t(::emu::to_bits(f));
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return __nv_bfloat16{uint16_t((x >> 16) | 0x40u)};  // quiet NaN
    return __nv_bfloat16{uint16_t((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16)};
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline unsigned short __half_as_ushort(__half h) { return h.bits; }
inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return __nv_bfloat16{b}; }
