// ThreadSanitizer builds only (-DHP_SANITIZE=thread): tells TSan about the synchronisation of
// the OpenMP runtime. Debian's libgomp is not built with TSan, so the futex barriers that end a
// parallel region are invisible to it, and every write a team member makes inside a region then
// looks like a race with the thread that reads the result after the region. The link wraps the
// libgomp entry points our code calls (CMakeLists.txt, -Wl,--wrap=GOMP_...) with the functions
// below, which model OpenMP's own ordering with TSan's acquire / release annotations:
//   fork     what the encountering thread did before the region happens before every member's
//            body;
//   barrier  what every member did before an explicit or a loop's implicit barrier happens
//            before what any member does after it;
//   join     every member's body happens before what the encountering thread does after the
//            region.
// Each region has its own sync objects (on the encountering thread's stack), so unrelated
// threads - the ranks of the threads communicator, each running its own regions - gain no
// ordering from one another's regions. Accesses of our code inside the regions stay checked:
// two members writing the same element between barriers are still reported. docs/cli.md#sanitizers.
#if defined(__SANITIZE_THREAD__)

#include <sanitizer/tsan_interface.h>

extern "C" {
void __real_GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);
void __real_GOMP_barrier();
void __real_GOMP_loop_end();
void __wrap_GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);
void __wrap_GOMP_barrier();
void __wrap_GOMP_loop_end();
}

namespace {

struct Region {
  void (*fn)(void*);
  void* data;
  // Addresses TSan synchronises on. Barriers alternate between two, so that a member already
  // at the next barrier does not order its later writes before a slower member's return from
  // this one.
  char fork, join, barrier[2];
};

// The region the calling thread is a member of (nullptr outside any) and the barriers it has
// passed in it: the members of a team pass the same barriers in the same order.
struct Membership {
  Region* region = nullptr;
  unsigned barriers = 0;
};
thread_local Membership current;

void member(void* p) {
  auto* r = static_cast<Region*>(p);
  __tsan_acquire(&r->fork);
  const Membership outer = current;
  current = {r, 0};
  r->fn(r->data);
  current = outer;
  __tsan_release(&r->join);
}

void barrier(void (*real)()) {
  Region* r = current.region;
  if (!r) return real();
  char* sync = &r->barrier[current.barriers++ % 2];
  __tsan_release(sync);
  real();
  __tsan_acquire(sync);
}

}  // namespace

extern "C" void __wrap_GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads,
                                     unsigned flags) {
  Region r{fn, data, 0, 0, {0, 0}};
  __tsan_release(&r.fork);
  __real_GOMP_parallel(member, &r, num_threads, flags);
  __tsan_acquire(&r.join);
}

extern "C" void __wrap_GOMP_barrier() { barrier(__real_GOMP_barrier); }
extern "C" void __wrap_GOMP_loop_end() { barrier(__real_GOMP_loop_end); }

#endif
