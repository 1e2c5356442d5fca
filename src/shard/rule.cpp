// Node rules from OpDef sharding strings: einsum parsing (with "..." and whole upper-case dims),
// the keyword rules (broadcast, reduce, sum_to, broadcast_to, slice, split, permute, concat,
// reshape) and each op's linearity in its inputs, from its OpDef (which partial sums may pass
// through unreduced).
#include "hp/shard/rule.hpp"

#include <algorithm>
#include <cctype>
#include <map>

#include "hp/ir/op_def.hpp"

namespace hp::shard {

namespace {

using ir::Node;

std::vector<std::string> split_on(const std::string& s, char c) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t e = s.find(c, start);
    out.push_back(s.substr(start, e == std::string::npos ? std::string::npos : e - start));
    if (e == std::string::npos) break;
    start = e + 1;
  }
  return out;
}

struct Builder {
  NodeRule r;
  std::map<std::string, int> ids;
  int factor(const std::string& name, bool whole) {
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    int id = int(r.size.size());
    ids[name] = id;
    r.size.push_back(1);
    r.whole.push_back(whole);
    return id;
  }
  int fresh(bool whole = false) {
    std::string name = std::to_string(r.size.size());
    name.insert(name.begin(), '#');
    return factor(name, whole);
  }
  // Sizes from the dims each factor labels; size-1 dims of a larger factor are broadcasts.
  void finish(const Node& n, const ir::Graph& g) {
    auto see = [&](const std::vector<int>& fs, const Shape& s) {
      for (size_t d = 0; d < fs.size(); ++d)
        if (fs[d] >= 0) r.size[size_t(fs[d])] = std::max(r.size[size_t(fs[d])], s[d]);
    };
    for (size_t i = 0; i < n.inputs.size(); ++i) see(r.in[i], g.value(n.inputs[i]).type.shape);
    for (size_t i = 0; i < n.outputs.size(); ++i) see(r.out[i], g.value(n.outputs[i]).type.shape);
    auto cut = [&](std::vector<int>& fs, const Shape& s) {
      for (size_t d = 0; d < fs.size(); ++d)
        if (fs[d] >= 0 && s[d] != r.size[size_t(fs[d])]) fs[d] = -1;
    };
    for (size_t i = 0; i < n.inputs.size(); ++i) cut(r.in[i], g.value(n.inputs[i]).type.shape);
    for (size_t i = 0; i < n.outputs.size(); ++i) cut(r.out[i], g.value(n.outputs[i]).type.shape);
  }
};

[[noreturn]] void bad(const Node& n, const std::string& what) {
  throw Error("[shard] op '" + n.def->name + "': " + what + " (rule \"" + n.def->sharding + "\")");
}

// One operand of an einsum string against a tensor of rank `rank`.
std::vector<int> operand(Builder& b, const Node& n, std::string spec, size_t rank) {
  std::vector<std::string> letters;
  bool ell = false;
  for (size_t i = 0; i < spec.size();) {
    if (spec.compare(i, 3, "...") == 0) {
      if (ell) bad(n, "two ellipses in one operand");
      ell = true;
      letters.push_back("...");
      i += 3;
    } else if (std::isalpha(static_cast<unsigned char>(spec[i]))) {
      letters.push_back(std::string(1, spec[i]));
      ++i;
    } else if (spec[i] == ' ') {
      ++i;
    } else {
      bad(n, "unexpected character '" + std::string(1, spec[i]) + "'");
    }
  }
  size_t explicit_dims = letters.size() - (ell ? 1 : 0);
  if (!ell && rank > explicit_dims) {  // leading batch dims the string leaves implicit
    letters.insert(letters.begin(), "...");
    ell = true;
  }
  if (rank < explicit_dims)
    bad(n, "operand \"" + spec + "\" for a tensor of rank " + std::to_string(rank));
  std::vector<int> out;
  for (const auto& l : letters) {
    if (l == "...") {
      const size_t e = rank - explicit_dims;
      for (size_t k = 0; k < e; ++k) {
        std::string name = std::to_string(e - 1 - k);
        name.insert(name.begin(), '@');
        out.push_back(b.factor(name, false));
      }
    } else {
      bool upper = std::isupper(static_cast<unsigned char>(l[0])) != 0;
      out.push_back(b.factor(l, upper));
    }
  }
  return out;
}

void einsum(Builder& b, const Node& n, const ir::Graph& g) {
  const std::string& s = n.def->sharding;
  size_t arrow = s.find("->");
  if (arrow == std::string::npos) bad(n, "no '->'");
  std::vector<std::string> ins = split_on(s.substr(0, arrow), ',');
  std::vector<std::string> outs = split_on(s.substr(arrow + 2), ',');
  // Operands past the node's inputs are optional inputs it leaves out (rope's positions).
  if (ins.size() > n.inputs.size()) ins.resize(n.inputs.size());
  if (ins.size() != n.inputs.size() || outs.size() != n.outputs.size())
    bad(n, "operand count differs from the node's " + std::to_string(n.inputs.size()) +
               " inputs and " + std::to_string(n.outputs.size()) + " outputs");
  for (int k = 0; k < 2 && k < int(ins.size()); ++k) {  // transposed matmul operands
    if (n.attrs.i(k == 0 ? "ta" : "tb", 0) && ins[size_t(k)].size() >= 2)
      std::swap(ins[size_t(k)][ins[size_t(k)].size() - 1],
                ins[size_t(k)][ins[size_t(k)].size() - 2]);
  }
  for (size_t i = 0; i < ins.size(); ++i)
    b.r.in.push_back(operand(b, n, ins[i], g.value(n.inputs[i]).type.shape.size()));
  for (size_t i = 0; i < outs.size(); ++i)
    b.r.out.push_back(operand(b, n, outs[i], g.value(n.outputs[i]).type.shape.size()));
}

// Dims aligned from the right with the output (numpy broadcasting).
void aligned(Builder& b, const Node& n, const ir::Graph& g) {
  const Shape& os = g.value(n.outputs[0]).type.shape;
  std::vector<int> of;
  for (size_t d = 0; d < os.size(); ++d) of.push_back(b.fresh());
  for (ir::ValueId v : n.inputs) {
    const Shape& s = g.value(v).type.shape;
    std::vector<int> f;
    for (size_t d = 0; d < s.size(); ++d) f.push_back(of[os.size() - s.size() + d]);
    b.r.in.push_back(f);
  }
  b.r.out.push_back(of);
}

}  // namespace

NodeRule node_rule(const ir::Graph& g, const ir::Node& n) {
  Builder b;
  const std::string& kw = n.def->sharding;
  b.r.linearity = n.def->linearity;
  if (b.r.linearity == Linearity::kSingle) b.r.linear_in = n.def->linear_in;
  b.r.linear_in.resize(n.inputs.size(), b.r.linearity == Linearity::kJoint);
  auto shape_in = [&](size_t i) -> const Shape& { return g.value(n.inputs[i]).type.shape; };
  auto shape_out = [&](size_t i) -> const Shape& { return g.value(n.outputs[i]).type.shape; };

  if (kw == "reshape") {
    b.r.reshape = true;
    b.r.in.push_back(std::vector<int>(shape_in(0).size(), -1));
    b.r.out.push_back(std::vector<int>(shape_out(0).size(), -1));
    return b.r;
  }
  if (kw == "broadcast") {
    aligned(b, n, g);
  } else if (kw == "sum_to" || kw == "broadcast_to") {
    // The bigger side's dims; the smaller side shares those it keeps at full size. Reduced dims
    // of sum_to appear only on the input: contractions, so the output becomes a partial sum.
    const bool sum = kw == "sum_to";
    const Shape& big = sum ? shape_in(0) : shape_out(0);
    const Shape& small = sum ? shape_out(0) : shape_in(0);
    std::vector<int> bf, sf;
    for (size_t d = 0; d < big.size(); ++d) bf.push_back(b.fresh());
    for (size_t d = 0; d < small.size(); ++d) sf.push_back(bf[big.size() - small.size() + d]);
    b.r.in.push_back(sum ? bf : sf);
    b.r.out.push_back(sum ? sf : bf);
  } else if (kw == "reduce") {
    const Shape& s = shape_in(0);
    std::vector<bool> red(s.size(), n.attrs.ints("axes").empty());
    for (int64_t a : n.attrs.ints("axes")) red[size_t(norm_axis(a, s.size(), "reduce"))] = true;
    std::vector<int> in, out;
    for (size_t d = 0; d < s.size(); ++d) {
      int f = b.fresh(red[d]);
      in.push_back(f);
      if (!red[d])
        out.push_back(f);
      else if (n.attrs.i("keepdim", 0))
        out.push_back(-1);
    }
    b.r.in.push_back(in);
    b.r.out.push_back(out);
  } else if (kw == "slice" || kw == "concat" || kw == "split") {
    const size_t r = shape_out(0).size();
    const int64_t ax = norm_axis(n.attrs.i("axis"), r, kw.c_str());
    std::vector<int> f;
    for (size_t d = 0; d < r; ++d) f.push_back(int64_t(d) == ax ? -1 : b.fresh());
    for (size_t i = 0; i < n.inputs.size(); ++i) b.r.in.push_back(f);
    for (size_t o = 0; o < n.outputs.size(); ++o) b.r.out.push_back(f);
  } else if (kw == "permute") {
    const auto& perm = n.attrs.ints("perm");
    std::vector<int> in;
    for (size_t d = 0; d < perm.size(); ++d) in.push_back(b.fresh());
    std::vector<int> out;
    for (int64_t p : perm) out.push_back(in[size_t(p)]);
    b.r.in.push_back(in);
    b.r.out.push_back(out);
  } else if (kw.find("->") != std::string::npos) {
    einsum(b, n, g);
  } else {
    bad(n, "no sharding rule");
  }
  b.finish(n, g);
  return b.r;
}

}  // namespace hp::shard
