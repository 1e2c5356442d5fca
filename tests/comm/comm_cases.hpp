// Collective test cases shared by the threads test (comm_test.cpp) and the MPI test
// (comm_mpi.cpp): every collective x dtype x op x even/uneven counts, checked element by element
// against a reference computed from the inputs every rank can regenerate.
// Not backend specific: failure tests live with each backend's test.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "hp/comm/communicator.hpp"

namespace hp::comm::testing {

using std::chrono::milliseconds;
inline constexpr milliseconds kWait{20000};
inline const std::vector<DType> kDTypes = {DType::kF32, DType::kBF16, DType::kF16, DType::kI32,
                                           DType::kI64};
inline const std::vector<ReduceOp> kOps = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax,
                                           ReduceOp::kMin};

// A host buffer of any dtype, read and written as double.
class HostBuf {
 public:
  HostBuf(DType t, size_t n) : t_(t), n_(n), bytes_(std::max<size_t>(n, 1) * dtype_size(t)) {}
  void* data() { return bytes_.data(); }
  char* at(size_t i) { return bytes_.data() + i * dtype_size(t_); }
  size_t size() const { return n_; }
  void set(size_t i, double v) {
    char* p = bytes_.data() + i * dtype_size(t_);
    switch (t_) {
      case DType::kF32: {
        float f = float(v);
        std::memcpy(p, &f, 4);
        break;
      }
      case DType::kBF16: {
        uint16_t h = f32_to_bf16(float(v));
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kF16: {
        uint16_t h = f32_to_f16(float(v));
        std::memcpy(p, &h, 2);
        break;
      }
      case DType::kI32: {
        int32_t x = int32_t(v);
        std::memcpy(p, &x, 4);
        break;
      }
      case DType::kI64: {
        int64_t x = int64_t(v);
        std::memcpy(p, &x, 8);
        break;
      }
    }
  }
  double get(size_t i) const {
    const char* p = bytes_.data() + i * dtype_size(t_);
    uint16_t h;
    switch (t_) {
      case DType::kF32: {
        float f;
        std::memcpy(&f, p, 4);
        return f;
      }
      case DType::kBF16:
        std::memcpy(&h, p, 2);
        return bf16_to_f32(h);
      case DType::kF16:
        std::memcpy(&h, p, 2);
        return f16_to_f32(h);
      case DType::kI32: {
        int32_t x;
        std::memcpy(&x, p, 4);
        return x;
      }
      case DType::kI64: {
        int64_t x;
        std::memcpy(&x, p, 8);
        return double(x);
      }
    }
    return 0;
  }

 private:
  DType t_;
  size_t n_;
  std::vector<char> bytes_;
};

// Rank r's input at element i: small integers (exact in every dtype), different per rank.
inline double input(int r, size_t i) {
  return double(int((size_t(r) * 7 + i * 3) % 11) - 5);
}

inline double reference(DType t, ReduceOp op, int n, size_t i, int first_rank = 0) {
  double acc = input(first_rank, i);
  for (int r = first_rank + 1; r < first_rank + n; ++r) {
    double v = input(r, i);
    if (op == ReduceOp::kMax)
      acc = std::max(acc, v);
    else if (op == ReduceOp::kMin)
      acc = std::min(acc, v);
    else
      acc += v;
  }
  if (op == ReduceOp::kAvg) acc = is_float(t) ? acc / n : std::trunc(acc / n);
  return acc;
}

// Counts up mismatches; reports the first one with its context.
class Checker {
 public:
  explicit Checker(std::string what) : what_(std::move(what)) {}
  void expect(double got, double want, DType t, const std::string& ctx) {
    double tol = t == DType::kBF16 ? 1e-2 : t == DType::kF16 ? 1e-3 : 1e-6;
    if (std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want))) return;
    if (bad_++ == 0)
      first_ = ctx + ": got " + std::to_string(got) + ", want " + std::to_string(want);
  }
  ~Checker() { EXPECT_EQ(bad_, 0) << what_ << ": " << bad_ << " wrong elements; first " << first_; }

 private:
  std::string what_;
  int bad_ = 0;
  std::string first_;
};

inline std::string ctx(const char* op, DType t, ReduceOp r, size_t n, size_t i) {
  return std::string(op) + "(" + dtype_name(t) + ", " + reduce_op_name(r) + ", count " +
         std::to_string(n) + ") element " + std::to_string(i);
}

// Per-rank count patterns: even ones, and uneven ones with empty ranks.
inline std::vector<std::vector<size_t>> count_patterns(int n) {
  std::vector<std::vector<size_t>> out = {std::vector<size_t>(size_t(n), 1),
                                          std::vector<size_t>(size_t(n), 37),
                                          std::vector<size_t>(size_t(n), 5000)};
  std::vector<size_t> uneven, big;
  for (int r = 0; r < n; ++r) {
    uneven.push_back(size_t((r * 5 + 3) % 7));
    big.push_back(size_t(r + 1) * 3001);
  }
  out.push_back(uneven);
  out.push_back(big);
  return out;
}

inline void check_all_reduce(Communicator& c,
                             const std::vector<size_t>& counts = {0, 1, 5, 33, 1000, 40001}) {
  Checker chk("all_reduce on rank " + std::to_string(c.rank()));
  for (DType t : kDTypes)
    for (ReduceOp op : kOps)
      for (size_t n : counts)
        for (bool in_place : {false, true}) {
          HostBuf in(t, n), out(t, n);
          for (size_t i = 0; i < n; ++i) in.set(i, input(c.rank(), i));
          HostBuf& res = in_place ? in : out;
          c.all_reduce(in.data(), res.data(), n, t, op).wait(kWait);
          for (size_t i = 0; i < n; ++i)
            chk.expect(res.get(i), reference(t, op, c.size(), i), t,
                       ctx(in_place ? "all_reduce in place" : "all_reduce", t, op, n, i));
        }
}

inline void check_all_gather(Communicator& c) {
  Checker chk("all_gather on rank " + std::to_string(c.rank()));
  for (DType t : kDTypes)
    for (const auto& counts : count_patterns(c.size()))
      for (bool in_place : {false, true}) {
        size_t total = std::accumulate(counts.begin(), counts.end(), size_t(0));
        size_t off = std::accumulate(counts.begin(), counts.begin() + c.rank(), size_t(0));
        size_t mine = counts[size_t(c.rank())];
        HostBuf in(t, mine), out(t, total);
        for (size_t i = 0; i < mine; ++i)
          (in_place ? out : in).set((in_place ? off : 0) + i, input(c.rank(), i));
        const void* send = in_place ? static_cast<const void*>(out.at(off)) : in.data();
        c.all_gather(send, out.data(), counts, t).wait(kWait);
        size_t pos = 0;
        for (int r = 0; r < c.size(); ++r)
          for (size_t i = 0; i < counts[size_t(r)]; ++i, ++pos)
            chk.expect(out.get(pos), input(r, i), t,
                       ctx("all_gather", t, ReduceOp::kSum, total, pos));
      }
}

inline void check_reduce_scatter(Communicator& c) {
  Checker chk("reduce_scatter on rank " + std::to_string(c.rank()));
  for (DType t : kDTypes)
    for (ReduceOp op : kOps)
      for (const auto& counts : count_patterns(c.size())) {
        size_t total = std::accumulate(counts.begin(), counts.end(), size_t(0));
        size_t off = std::accumulate(counts.begin(), counts.begin() + c.rank(), size_t(0));
        size_t mine = counts[size_t(c.rank())];
        HostBuf in(t, total), out(t, mine);
        for (size_t i = 0; i < total; ++i) in.set(i, input(c.rank(), i));
        c.reduce_scatter(in.data(), out.data(), counts, t, op).wait(kWait);
        for (size_t i = 0; i < mine; ++i)
          chk.expect(out.get(i), reference(t, op, c.size(), off + i), t,
                     ctx("reduce_scatter", t, op, total, i));
      }
}

// Element j sent from p to q.
inline double a2a_value(int p, int q, size_t j) {
  return double(int(p * 5 + q * 3 + j) % 23 - 11);
}

inline void check_all_to_all(Communicator& c) {
  Checker chk("all_to_all on rank " + std::to_string(c.rank()));
  int n = c.size(), me = c.rank();
  for (DType t : kDTypes)
    for (size_t scale : {size_t(1), size_t(997)}) {
      auto count = [&](int p, int q) { return size_t((p + 2 * q) % 4) * scale; };
      std::vector<size_t> sc, rc;
      for (int q = 0; q < n; ++q) {
        sc.push_back(count(me, q));
        rc.push_back(count(q, me));
      }
      HostBuf in(t, std::accumulate(sc.begin(), sc.end(), size_t(0)));
      HostBuf out(t, std::accumulate(rc.begin(), rc.end(), size_t(0)));
      size_t pos = 0;
      for (int q = 0; q < n; ++q)
        for (size_t j = 0; j < sc[size_t(q)]; ++j) in.set(pos++, a2a_value(me, q, j));
      c.all_to_all(in.data(), sc, out.data(), rc, t).wait(kWait);
      pos = 0;
      for (int p = 0; p < n; ++p)
        for (size_t j = 0; j < rc[size_t(p)]; ++j, ++pos)
          chk.expect(out.get(pos), a2a_value(p, me, j), t,
                     ctx("all_to_all", t, ReduceOp::kSum, out.size(), pos));
    }
}

inline void check_broadcast(Communicator& c) {
  Checker chk("broadcast on rank " + std::to_string(c.rank()));
  for (DType t : kDTypes)
    for (int root = 0; root < c.size(); ++root)
      for (size_t n : {size_t(1), size_t(4099)}) {
        HostBuf buf(t, n);
        for (size_t i = 0; i < n; ++i) buf.set(i, c.rank() == root ? input(root, i) : -99.0);
        c.broadcast(buf.data(), n, t, root).wait(kWait);
        for (size_t i = 0; i < n; ++i)
          chk.expect(buf.get(i), input(root, i), t, ctx("broadcast", t, ReduceOp::kSum, n, i));
      }
}

// Ring exchange with every rank sending before it receives (would deadlock if send blocked the
// stream), two tags received in reverse order.
inline void check_send_recv(Communicator& c) {
  if (c.size() < 2) return;
  Checker chk("send/recv on rank " + std::to_string(c.rank()));
  int next = (c.rank() + 1) % c.size(), prev = (c.rank() + c.size() - 1) % c.size();
  for (DType t : kDTypes) {
    size_t n = 70001;
    HostBuf a(t, n), b(t, 3), ra(t, n), rb(t, 3);
    for (size_t i = 0; i < n; ++i) a.set(i, input(c.rank(), i));
    for (size_t i = 0; i < 3; ++i) b.set(i, double(c.rank()));
    Work s1 = c.send(a.data(), n, t, next, 1);
    Work s2 = c.send(b.data(), 3, t, next, 2);
    Work r2 = c.recv(rb.data(), 3, t, prev, 2);
    Work r1 = c.recv(ra.data(), n, t, prev, 1);
    std::vector<Work> all = {s1, s2, r2, r1};
    wait_all(all, kWait);
    for (size_t i = 0; i < n; ++i) chk.expect(ra.get(i), input(prev, i), t, "tag 1");
    for (size_t i = 0; i < 3; ++i) chk.expect(rb.get(i), double(prev), t, "tag 2");
  }
}

// A wait shorter than a peer's delay throws hp::Timeout; the operation still completes later.
inline void check_timeout(Communicator& c) {
  if (c.size() < 2) return;
  if (c.rank() != 0) std::this_thread::sleep_for(milliseconds(300));
  Work w = c.barrier();
  if (c.rank() == 0) {
    EXPECT_THROW(w.wait(milliseconds(20)), Timeout);
  }
  w.wait(kWait);
}

// Sub-groups: halves by parity, a reversed list, a nested single-rank split.
inline void check_split(Communicator& c) {
  int n = c.size(), me = c.rank();
  std::vector<int> mine;
  for (int r = me % 2; r < n; r += 2) mine.push_back(r);
  auto sub = c.split(mine);
  ASSERT_EQ(sub->size(), int(mine.size()));
  EXPECT_EQ(sub->rank(), me / 2);
  {
    // Reference over the member ranks of this parity.
    Checker chk("split all_reduce on rank " + std::to_string(me));
    for (DType t : kDTypes) {
      size_t count = 3001;
      HostBuf buf(t, count);
      for (size_t i = 0; i < count; ++i) buf.set(i, input(me, i));
      sub->all_reduce(buf.data(), buf.data(), count, t, ReduceOp::kSum).wait(kWait);
      for (size_t i = 0; i < count; ++i) {
        double want = 0;
        for (int r : mine) want += input(r, i);
        chk.expect(buf.get(i), want, t, "sub-group sum");
      }
    }
  }
  check_all_gather(*sub);
  check_all_to_all(*sub);
  std::vector<int> rev(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) rev[size_t(r)] = n - 1 - r;
  auto rsub = c.split(rev);
  EXPECT_EQ(rsub->rank(), n - 1 - me);
  check_broadcast(*rsub);  // root 0 of rsub is rank n-1 of c
  check_reduce_scatter(*rsub);
  auto single = sub->split({sub->rank()});
  EXPECT_EQ(single->size(), 1);
  check_all_reduce(*single, {0, 7});
  EXPECT_THROW(c.split({(me + 1) % n == me ? n : (me + 1) % n}), Error);  // not a member
}

}  // namespace hp::comm::testing
