// The traced program: an SSA list of nodes over values with static types (global or local shapes).
// Not an executor and not a tensor library: a Graph holds types and structure, never data.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "hp/core/dtype.hpp"
#include "hp/core/error.hpp"
#include "hp/core/shape.hpp"

namespace hp::ir {

using ValueId = int32_t;
using NodeId = int32_t;
struct OpDef;

struct TensorType {
  Shape shape;
  DType dtype = DType::kF32;
  bool operator==(const TensorType&) const = default;
};
std::string type_str(const TensorType& t);  // "f32[8, 128]"

using AttrValue = std::variant<int64_t, double, std::vector<int64_t>, std::string>;

// Named op attributes; typed getters throw naming the attribute when missing or mistyped.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<const std::string, AttrValue>> init) : m_(init) {}
  bool has(const std::string& k) const { return m_.count(k) != 0; }
  int64_t i(const std::string& k) const;
  int64_t i(const std::string& k, int64_t dflt) const { return has(k) ? i(k) : dflt; }
  double f(const std::string& k) const;
  double f(const std::string& k, double dflt) const { return has(k) ? f(k) : dflt; }
  const std::vector<int64_t>& ints(const std::string& k) const;
  const std::string& s(const std::string& k) const;
  void set(const std::string& k, AttrValue v) { m_[k] = std::move(v); }
  const std::map<std::string, AttrValue>& all() const { return m_; }

 private:
  std::map<std::string, AttrValue> m_;
};

enum class ValueKind : uint8_t {
  kInput,  // fed per step (token ids, targets)
  kParam,  // trainable parameter, persistent
  kState,  // persistent non-trainable buffer
  kNode,   // produced by a node
};

struct Value {
  TensorType type;
  std::string name;  // parameters: HF names; others may be empty
  ValueKind kind = ValueKind::kNode;
  NodeId producer = -1;
  int out_index = 0;
};

struct Node {
  const OpDef* def = nullptr;
  Attrs attrs;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  std::string scope;  // e.g. "h.3.attn": groups nodes of a layer for printing and planning
};

class Graph;

// A handle to a value while tracing; model code combines Vars like tensors.
struct Var {
  Graph* g = nullptr;
  ValueId id = -1;
  bool defined() const { return g != nullptr && id >= 0; }
  // By value: a reference into the graph would dangle once the graph grows.
  TensorType type() const;
  Shape shape() const { return type().shape; }
  DType dtype() const { return type().dtype; }
  int64_t dim(int64_t i) const;
  size_t rank() const { return shape().size(); }
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;  // Vars point at their graph: no accidental copies
  Graph& operator=(const Graph&) = delete;

  // A value fed from outside (kInput, kParam or kState).
  Var input(const std::string& name, TensorType type, ValueKind kind = ValueKind::kInput);
  Var param(const std::string& name, Shape shape, DType dtype = DType::kF32) {
    return input(name, {std::move(shape), dtype}, ValueKind::kParam);
  }
  // Appends a node running `op` (a record of the op table, hp/ops/registry.hpp); infers output
  // types and throws "[op] message (inputs: f32[..], ...)" for ill-typed programs.
  std::vector<Var> apply(const OpDef& op, const std::vector<Var>& inputs, Attrs attrs = {});
  Var apply1(const OpDef& op, const std::vector<Var>& inputs, Attrs attrs = {}) {
    return apply(op, inputs, std::move(attrs))[0];
  }

  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<Value>& values() const { return values_; }
  const Node& node(NodeId n) const { return nodes_.at(size_t(n)); }
  const Value& value(ValueId v) const { return values_.at(size_t(v)); }
  Var var(ValueId v) { return Var{this, v}; }
  void set_name(ValueId v, std::string name) { values_.at(size_t(v)).name = std::move(name); }
  // Parameters in creation order.
  std::vector<ValueId> params() const;
  // Values read from outside the graph: inputs, params and state.
  std::vector<ValueId> sources() const;
  // Find a named value (throws when absent).
  ValueId find(const std::string& name) const;

  // Scope applied to nodes appended while it is set ("" clears it).
  void set_scope(std::string s) { scope_ = std::move(s); }
  const std::string& scope() const { return scope_; }

  // Checks SSA order, types against re-inference, and that ids are in range; throws on failure.
  void verify() const;
  // Readable listing: one line per node, "%12 = matmul(%3, %7) {tb=1} : f32[8, 128, 256]".
  std::string str() const;

 private:
  std::vector<Node> nodes_;
  std::vector<Value> values_;
  std::string scope_;
};

}  // namespace hp::ir
