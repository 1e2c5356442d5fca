// Executor: wraps arena slots and output buffers as tensors once, then runs kernels in order.
#include "hp/runtime/executor.hpp"

#include <algorithm>
#include <chrono>

#include "hp/ir/op_def.hpp"

namespace hp::runtime {

using ir::ValueId;

// The kernel of every node the program computes, looked up once.
static std::vector<const Kernel*> kernels_of(const Program& p, const Backend& backend) {
  const ir::Graph& g = *p.graph;
  std::vector<const Kernel*> out(g.nodes().size(), nullptr);
  for (const Instr& ins : p.instrs) {
    if (ins.kind != InstrKind::kCompute || out[size_t(ins.node)]) continue;
    const ir::Node& n = g.node(ins.node);
    if (n.def->view) continue;
    const Kernel* k = backend.kernel(n.def->id);
    HP_CHECK(k, "[executor] backend '", backend.name(), "' has no kernel for op '", n.def->name,
             "' (node ", ins.node, n.scope.empty() ? "" : " in " + n.scope, ")");
    out[size_t(ins.node)] = k;
  }
  return out;
}

Executor::Executor(const Program& program, std::shared_ptr<Allocator> device, Context ctx,
                   const Backend& backend)
    : program_(program),
      device_(std::move(device)),
      ctx_(ctx),
      backend_(backend),
      kernels_(kernels_of(program, backend)) {
  HP_CHECK(ctx_.threads >= 1, "[executor] threads must be >= 1, got ", ctx_.threads);
  const ir::Graph& g = *program_.graph;
  tensors_.resize(g.values().size());
  own_buffer_.resize(g.values().size(), false);
  if (program_.arena_bytes > 0) arena_ = std::make_shared<Storage>(device_, program_.arena_bytes);
  std::vector<bool> is_output(g.values().size(), false);
  for (ValueId o : program_.outputs) is_output[size_t(program_.root[size_t(o)])] = true;
  std::vector<bool> out(g.values().size(), false);
  for (ValueId o : program_.outputs) out[size_t(o)] = true;
  for (const Instr& ins : program_.instrs)
    if (ins.kind == InstrKind::kCompute && g.node(ins.node).def->view &&
        !out[size_t(g.node(ins.node).outputs[0])])
      transient_views_.push_back(g.node(ins.node).outputs[0]);
  for (size_t v = 0; v < g.values().size() && !program_.placed_at_run_time; ++v) {
    const auto& t = g.value(ValueId(v)).type;
    if (program_.offset[v] >= 0) {
      tensors_[v] = Tensor(arena_, size_t(program_.offset[v]), t.shape, t.dtype);
    } else if (is_output[v] && program_.root[v] == ValueId(v) &&
               g.value(ValueId(v)).kind == ir::ValueKind::kNode) {
      tensors_[v] = Tensor::zeros(t.shape, t.dtype, device_);
      own_buffer_[v] = true;
    }
  }
}

void Executor::bind(ValueId v, Tensor t) {
  const ir::Graph& g = *program_.graph;
  const ir::Value& val = g.value(v);
  HP_CHECK(val.kind != ir::ValueKind::kNode, "[executor] %", v, " is not a source");
  HP_CHECK(t.shape() == val.type.shape && t.dtype() == val.type.dtype, "[executor] binding '",
           val.name, "': expected ", ir::type_str(val.type), ", got ", dtype_name(t.dtype()),
           shape_str(t.shape()));
  HP_CHECK(t.is_contiguous(), "[executor] binding '", val.name, "': tensor is not contiguous");
  tensors_[size_t(v)] = std::move(t);
}

void Executor::unbind(const std::vector<ValueId>& sources) {
  const ir::Graph& g = *program_.graph;
  for (ValueId v : sources) {
    HP_CHECK(g.value(v).kind != ir::ValueKind::kNode, "[executor] %", v, " is not a source");
    tensors_.at(size_t(v)) = Tensor();
  }
  for (ValueId v : transient_views_) tensors_[size_t(v)] = Tensor();
}

const Tensor& Executor::get(ValueId v) const {
  const Tensor& t = tensors_.at(size_t(v));
  HP_CHECK(t.defined(), "[executor] %", v, " has no buffer (not an output or source)");
  return t;
}
Tensor& Executor::get_mut(ValueId v) {
  Tensor& t = tensors_.at(size_t(v));
  HP_CHECK(t.defined(), "[executor] %", v, " has no buffer (not an output or source)");
  return t;
}

std::vector<Tensor> Executor::take(const std::vector<ValueId>& vs) {
  std::vector<Tensor> out;
  std::vector<ValueId> roots;  // the buffers handed over
  for (ValueId v : vs) {
    const ValueId r = program_.root.at(size_t(v));
    if (!own_buffer_[size_t(r)]) {
      out.push_back(get(v).clone(device_));
      continue;
    }
    out.push_back(get(v));
    if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
  }
  for (ValueId r : roots) {
    Tensor& t = tensors_[size_t(r)];
    t = Tensor(t.shape(), t.dtype(), device_);  // every kernel writes all of its output
  }
  // Views of a buffer handed over are recomputed by the next run; held here, they would keep it.
  for (size_t w = 0; w < tensors_.size(); ++w) {
    const ValueId r = program_.root[w];
    if (r != ValueId(w) && std::find(roots.begin(), roots.end(), r) != roots.end())
      tensors_[w] = Tensor();
  }
  return out;
}

void Executor::run() {
  const ir::Graph& g = *program_.graph;
  const bool placed = program_.placed_at_run_time;
  HP_CHECK(!placed || mover_, "[executor] an offload plan needs a MoveHandler");
  for (ValueId s : program_.sources)
    HP_CHECK(placed || tensors_[size_t(s)].defined(), "[executor] source '", g.value(s).name,
             "' is not bound");
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  for (const Instr& ins : program_.instrs) {
    if (ins.kind != InstrKind::kCompute) {
      if (mover_) {
        mover_->move(ins, *this);
      } else {
        HP_CHECK(ins.kind == InstrKind::kAlloc || ins.kind == InstrKind::kFree,
                 "[executor] a transfer instruction needs a MoveHandler");
      }
      continue;
    }
    const ir::Node& n = g.node(ins.node);
    if (placed) {  // a plan bug must not reach a kernel as a null buffer
      for (ValueId v : n.inputs)
        HP_CHECK(tensors_[size_t(v)].defined(), "[executor] node ", ins.node, " (", n.def->name,
                 "): input %", v, " is not on the device");
    }
    if (n.def->view) {  // alias: same buffer, new shape
      const auto& t = g.value(n.outputs[0]).type;
      tensors_[size_t(n.outputs[0])] = tensors_[size_t(n.inputs[0])].reshape(t.shape);
      continue;
    }
    in.clear();
    out.clear();
    for (ValueId v : n.inputs) in.push_back(&tensors_[size_t(v)]);
    for (ValueId v : n.outputs) out.push_back(&tensors_[size_t(v)]);
    KernelArgs args{ctx_, n, in, out, comm_};
    auto t0 = std::chrono::steady_clock::now();
    try {
      kernels_[size_t(ins.node)]->run(args);
    } catch (const Error& e) {
      throw Error(detail::cat("[executor] node ", ins.node, " (", n.def->name,
                              n.scope.empty() ? "" : " in " + n.scope, "): ", e.what()));
    }
    if (profile_) {
      prof_[n.def->name] +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
}

}  // namespace hp::runtime
