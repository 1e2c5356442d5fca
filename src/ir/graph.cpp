// Graph construction, type inference on append, verification and printing.
#include "hp/ir/graph.hpp"

#include <sstream>

#include "hp/ir/op_def.hpp"

namespace hp::ir {

std::string type_str(const TensorType& t) {
  return dtype_name(t.dtype) + shape_str(t.shape);
}

int64_t Attrs::i(const std::string& k) const {
  auto it = m_.find(k);
  HP_CHECK(it != m_.end(), "missing attribute '", k, "'");
  if (auto p = std::get_if<int64_t>(&it->second)) return *p;
  throw Error("attribute '" + k + "' is not an integer");
}
double Attrs::f(const std::string& k) const {
  auto it = m_.find(k);
  HP_CHECK(it != m_.end(), "missing attribute '", k, "'");
  if (auto p = std::get_if<double>(&it->second)) return *p;
  if (auto p = std::get_if<int64_t>(&it->second)) return double(*p);
  throw Error("attribute '" + k + "' is not a number");
}
const std::vector<int64_t>& Attrs::ints(const std::string& k) const {
  auto it = m_.find(k);
  HP_CHECK(it != m_.end(), "missing attribute '", k, "'");
  if (auto p = std::get_if<std::vector<int64_t>>(&it->second)) return *p;
  throw Error("attribute '" + k + "' is not an integer list");
}
const std::string& Attrs::s(const std::string& k) const {
  auto it = m_.find(k);
  HP_CHECK(it != m_.end(), "missing attribute '", k, "'");
  if (auto p = std::get_if<std::string>(&it->second)) return *p;
  throw Error("attribute '" + k + "' is not a string");
}

TensorType Var::type() const {
  HP_CHECK(defined(), "[trace] use of an undefined value");
  return g->value(id).type;
}
int64_t Var::dim(int64_t i) const {
  return shape()[size_t(norm_axis(i, rank(), "dim"))];
}

Var Graph::input(const std::string& name, TensorType type, ValueKind kind) {
  HP_CHECK(kind != ValueKind::kNode, "[graph] input '", name, "' cannot be a node value");
  for (int64_t d : type.shape)
    HP_CHECK(d >= 0, "[graph] input '", name, "' has shape ", shape_str(type.shape));
  Value v;
  v.type = std::move(type);
  v.name = name;
  v.kind = kind;
  values_.push_back(std::move(v));
  return Var{this, ValueId(values_.size() - 1)};
}

static std::string input_types(const std::vector<TensorType>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i) s += (i ? ", " : "") + type_str(ts[i]);
  return s;
}

std::vector<Var> Graph::apply(const OpDef& def, const std::vector<Var>& inputs, Attrs attrs) {
  const std::string& op = def.name;
  std::vector<TensorType> in_types;
  Node n;
  n.def = &def;
  n.scope = scope_;
  for (const Var& v : inputs) {
    HP_CHECK(v.defined(), "[", op, "] undefined input");
    HP_CHECK(v.g == this, "[", op, "] input from another graph");
    in_types.push_back(value(v.id).type);
    n.inputs.push_back(v.id);
  }
  std::vector<TensorType> out_types;
  try {
    out_types = def.infer(in_types, attrs);
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind("[", 0) != 0) msg = "[" + op + "] " + msg;
    throw Error(msg + " (inputs: " + input_types(in_types) + ")");
  }
  n.attrs = std::move(attrs);
  NodeId nid = NodeId(nodes_.size());
  std::vector<Var> outs;
  for (size_t i = 0; i < out_types.size(); ++i) {
    Value v;
    v.type = out_types[i];
    v.producer = nid;
    v.out_index = int(i);
    values_.push_back(std::move(v));
    n.outputs.push_back(ValueId(values_.size() - 1));
    outs.push_back(Var{this, n.outputs.back()});
  }
  nodes_.push_back(std::move(n));
  return outs;
}

std::vector<ValueId> Graph::params() const {
  std::vector<ValueId> out;
  for (size_t i = 0; i < values_.size(); ++i)
    if (values_[i].kind == ValueKind::kParam) out.push_back(ValueId(i));
  return out;
}

std::vector<ValueId> Graph::sources() const {
  std::vector<ValueId> out;
  for (size_t i = 0; i < values_.size(); ++i)
    if (values_[i].kind != ValueKind::kNode) out.push_back(ValueId(i));
  return out;
}

ValueId Graph::find(const std::string& name) const {
  for (size_t i = 0; i < values_.size(); ++i)
    if (values_[i].name == name) return ValueId(i);
  throw Error("[graph] no value named '" + name + "'");
}

void Graph::verify() const {
  std::vector<bool> defined(values_.size(), false);
  for (size_t i = 0; i < values_.size(); ++i) defined[i] = values_[i].kind != ValueKind::kNode;
  for (size_t ni = 0; ni < nodes_.size(); ++ni) {
    const Node& n = nodes_[ni];
    HP_CHECK(n.def, "[verify] node ", ni, " has no op");
    std::vector<TensorType> in;
    for (ValueId v : n.inputs) {
      HP_CHECK(v >= 0 && size_t(v) < values_.size(), "[verify] node ", ni, " (", n.def->name,
               ") reads out-of-range value ", v);
      HP_CHECK(defined[size_t(v)], "[verify] node ", ni, " (", n.def->name, ") reads %", v,
               " before it is defined");
      in.push_back(values_[size_t(v)].type);
    }
    auto out = n.def->infer(in, n.attrs);
    HP_CHECK(out.size() == n.outputs.size(), "[verify] node ", ni, " (", n.def->name,
             ") output count changed");
    for (size_t k = 0; k < out.size(); ++k) {
      const Value& v = values_.at(size_t(n.outputs[k]));
      HP_CHECK(v.type == out[k], "[verify] node ", ni, " (", n.def->name, ") output ", k, " is ",
               type_str(v.type), " but infers ", type_str(out[k]));
      HP_CHECK(v.producer == NodeId(ni), "[verify] value %", n.outputs[k], " has wrong producer");
      HP_CHECK(!defined[size_t(n.outputs[k])], "[verify] value %", n.outputs[k], " defined twice");
      defined[size_t(n.outputs[k])] = true;
    }
  }
}

static std::string attr_str(const AttrValue& a) {
  std::ostringstream os;
  if (auto p = std::get_if<int64_t>(&a)) os << *p;
  if (auto p = std::get_if<double>(&a)) os << *p;
  if (auto p = std::get_if<std::string>(&a)) os << '"' << *p << '"';
  if (auto p = std::get_if<std::vector<int64_t>>(&a)) os << shape_str(*p);
  return os.str();
}

std::string Graph::str() const {
  std::ostringstream os;
  for (size_t i = 0; i < values_.size(); ++i) {
    const Value& v = values_[i];
    if (v.kind == ValueKind::kNode) continue;
    static const char* kinds[] = {"input", "param", "state", "node"};
    os << "%" << i << " = " << kinds[int(v.kind)] << " \"" << v.name << "\" : " << type_str(v.type)
       << "\n";
  }
  for (const Node& n : nodes_) {
    for (size_t k = 0; k < n.outputs.size(); ++k) os << (k ? ", %" : "%") << n.outputs[k];
    os << " = " << n.def->name << "(";
    for (size_t k = 0; k < n.inputs.size(); ++k) os << (k ? ", %" : "%") << n.inputs[k];
    os << ")";
    if (!n.attrs.all().empty()) {
      os << " {";
      bool first = true;
      for (auto& [k, a] : n.attrs.all()) {
        os << (first ? "" : ", ") << k << "=" << attr_str(a);
        first = false;
      }
      os << "}";
    }
    os << " :";
    for (ValueId o : n.outputs) os << " " << type_str(values_[size_t(o)].type);
    if (!n.scope.empty()) os << "  # " << n.scope;
    os << "\n";
  }
  return os.str();
}

}  // namespace hp::ir
