/*
 builtins.c: the 64-bit integer helpers LLVM calls on i386 (normally from compiler-rt, which the
 toolchain ships only for x86_64). Swift's integer printing divides UInt64 values, and size-
 optimised code shifts 64-bit values through these calls. Written with 32-bit operations only,
 so that compiling this file never emits a call to itself.
*/

typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;

union halves {
    u64 all;
    struct { u32 low, high; } part;
};

u64 __ashldi3(u64 value, int shift) {
    union halves in = {value}, out;
    shift &= 63;
    if (shift == 0) return value;
    if (shift >= 32) {
        out.part.low = 0;
        out.part.high = in.part.low << (shift - 32);
    } else {
        out.part.low = in.part.low << shift;
        out.part.high = (in.part.high << shift) | (in.part.low >> (32 - shift));
    }
    return out.all;
}

u64 __lshrdi3(u64 value, int shift) {
    union halves in = {value}, out;
    shift &= 63;
    if (shift == 0) return value;
    if (shift >= 32) {
        out.part.high = 0;
        out.part.low = in.part.high >> (shift - 32);
    } else {
        out.part.high = in.part.high >> shift;
        out.part.low = (in.part.low >> shift) | (in.part.high << (32 - shift));
    }
    return out.all;
}

i64 __ashrdi3(i64 value, int shift) {
    union halves in = {(u64)value}, out;
    shift &= 63;
    if (shift == 0) return value;
    if (shift >= 32) {
        out.part.high = (u32)((int)in.part.high >> 31);
        out.part.low = (u32)((int)in.part.high >> (shift - 32));
    } else {
        out.part.high = (u32)((int)in.part.high >> shift);
        out.part.low = (in.part.low >> shift) | (in.part.high << (32 - shift));
    }
    return (i64)out.all;
}

/* Restoring shift-and-subtract division, one quotient bit per step, on 32-bit halves. */
static u64 divide(u64 dividend, u64 divisor, u64 *remainder) {
    union halves n = {dividend}, d = {divisor}, q = {0}, r = {0};
    for (int bit = 63; bit >= 0; bit--) {
        r.part.high = (r.part.high << 1) | (r.part.low >> 31);
        r.part.low <<= 1;
        u32 next = bit >= 32 ? (n.part.high >> (bit - 32)) & 1 : (n.part.low >> bit) & 1;
        r.part.low |= next;
        int fits = r.part.high > d.part.high ||
                   (r.part.high == d.part.high && r.part.low >= d.part.low);
        if (fits) {
            u32 borrow = r.part.low < d.part.low;
            r.part.low -= d.part.low;
            r.part.high -= d.part.high + borrow;
            if (bit >= 32) q.part.high |= 1u << (bit - 32);
            else q.part.low |= 1u << bit;
        }
    }
    if (remainder) *remainder = r.all;
    return q.all;
}

u64 __udivdi3(u64 dividend, u64 divisor) { return divide(dividend, divisor, 0); }

u64 __umoddi3(u64 dividend, u64 divisor) {
    u64 remainder;
    divide(dividend, divisor, &remainder);
    return remainder;
}
