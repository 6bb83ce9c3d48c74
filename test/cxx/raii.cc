// uvctx from C++: a class that owns a context (the constructor makes it, the
// destructor releases it; it can be moved, not copied) and one that owns a
// watch, used on a loop where a deadline fires the watch. The header is
// included as a C++ program includes it, with nothing around it.
//
// make check builds and runs this as C++11, 14, 17 and 20 with the configured
// C++ compiler; the CI step cxx does it with g++ and clang++ and -Werror.
// Exits 0 when every check passed, 1 at the first that failed.
#include <uvctx.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <system_error>
#include <type_traits>
#include <utility>

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                   #cond);                                                     \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

namespace {

// uvctx's errors are negative errno values: a constructor that cannot make
// its context throws them as std::system_error, with nothing made.
void throw_if_error(int rc, const char *what) {
  if (rc < 0)
    throw std::system_error(-rc, std::generic_category(), what);
}

// Owns one reference to a context. A moved-from Context owns nothing
// (uvctx_release(NULL) does nothing), so destroying it is harmless.
class Context {
 public:
  static Context background() { return Context(uvctx_background()); }

  static Context with_cancel(uv_loop_t *loop, const Context &parent) {
    uvctx_t *ctx = nullptr;
    throw_if_error(uvctx_with_cancel(loop, parent.ctx_, &ctx),
                   "uvctx_with_cancel");
    return Context(ctx);
  }

  static Context with_timeout(uv_loop_t *loop, const Context &parent,
                              std::uint64_t timeout_ms) {
    uvctx_t *ctx = nullptr;
    throw_if_error(uvctx_with_timeout(loop, parent.ctx_, timeout_ms, &ctx),
                   "uvctx_with_timeout");
    return Context(ctx);
  }

  Context(Context &&other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }

  Context &operator=(Context &&other) noexcept {
    if (this != &other) {
      uvctx_release(ctx_);
      ctx_ = other.ctx_;
      other.ctx_ = nullptr;
    }
    return *this;
  }

  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;

  ~Context() { uvctx_release(ctx_); }

  uvctx_t *get() const { return ctx_; }
  int err() const { return uvctx_err(ctx_); }
  void cancel() { throw_if_error(uvctx_cancel(ctx_), "uvctx_cancel"); }

 private:
  explicit Context(uvctx_t *ctx) : ctx_(ctx) {}

  uvctx_t *ctx_;
};

extern "C" void watch_fired(uvctx_watch_t *w, int err);

// Calls fn(err) on the loop thread once ctx is done; unwatches on
// destruction if it has not run. uvctx keeps the address of the
// uvctx_watch_t until then, so a Watch can be neither copied nor moved.
class Watch {
 public:
  Watch(const Context &ctx, std::function<void(int)> fn) : fn_(std::move(fn)) {
    w_.data = this;
    throw_if_error(uvctx_watch(ctx.get(), &w_, watch_fired), "uvctx_watch");
  }

  Watch(const Watch &) = delete;
  Watch &operator=(const Watch &) = delete;

  // 0 if it had not run (and now never will), UV_EALREADY if it had.
  ~Watch() { uvctx_unwatch(&w_); }

  void fired(int err) { fn_(err); }

 private:
  uvctx_watch_t w_{};  // zeroed, as uvctx_watch() requires
  std::function<void(int)> fn_;
};

extern "C" void watch_fired(uvctx_watch_t *w, int err) {
  static_cast<Watch *>(w->data)->fired(err);
}

static_assert(!std::is_copy_constructible<Context>::value, "move-only");
static_assert(!std::is_copy_assignable<Context>::value, "move-only");
static_assert(std::is_nothrow_move_constructible<Context>::value, "movable");
static_assert(std::is_nothrow_move_assignable<Context>::value, "movable");
static_assert(!std::is_move_constructible<Watch>::value, "pinned");

extern "C" void on_guard(uv_timer_t *t) {
  (void)t;
  std::fprintf(stderr, "the deadline did not fire within 10 s\n");
  std::exit(1);
}

}  // namespace

int main() {
  uv_loop_t loop;
  uv_timer_t guard;
  int calls = 0, seen = 0;

  CHECK(uv_loop_init(&loop) == 0);
  // Fails the test if the loop is still running after 10 s; unref'd, so that
  // it does not keep the loop alive itself.
  CHECK(uv_timer_init(&loop, &guard) == 0);
  CHECK(uv_timer_start(&guard, on_guard, 10000, 0) == 0);
  uv_unref(reinterpret_cast<uv_handle_t *>(&guard));

  {
    Context root = Context::with_cancel(&loop, Context::background());
    Context request = Context::with_timeout(&loop, root, 20);
    uvctx_t *const made = request.get();

    // Moving hands the reference over: the moved-from object owns nothing.
    Context moved(std::move(request));
    CHECK(request.get() == nullptr);
    CHECK(moved.get() == made);

    Watch watch(moved, [&](int err) {
      calls++;
      seen = err;
    });
    CHECK(uvctx_keepalive(moved.get(), 1) == 0);  // the deadline keeps it running
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(calls == 1);
    CHECK(seen == UV_ETIMEDOUT);
    CHECK(moved.err() == UV_ETIMEDOUT);
    CHECK(root.err() == 0);  // a child's deadline never reaches its parent

    // Move assignment releases what the target held before taking over.
    moved = Context::with_cancel(&loop, root);
    CHECK(moved.get() != made);
    root.cancel();
    CHECK(moved.err() == UV_ECANCELED);

    // A constructor that fails throws, with nothing made.
    bool thrown = false;
    try {
      Context bad = Context::with_timeout(nullptr, root, 1);
    } catch (const std::system_error &e) {
      thrown = e.code().value() == -UV_EINVAL;
    }
    CHECK(thrown);
  }  // watch, moved, request (empty) and root are released here

  uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
  std::printf("raii: C++%ld: ok\n", static_cast<long>(__cplusplus));
  return 0;
}
