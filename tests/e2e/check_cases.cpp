// `hp check` must be able to fail: a copy of a shared reference case with its expected results
// damaged one way at a time (file missing, a tensor missing, NaN expected, --steps 0, one norm's
// final weights off by half a learning-rate step, ...) must exit non-zero with a message naming
// the problem, while the intact copy passes and reports how many tensors it compared.
// Not the tolerances' margins on other cases: tests/e2e/spmd.sh runs the shared cases.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "hp/io/safetensors.hpp"
#include "test_inputs.hpp"

namespace fs = std::filesystem;
using hp::Tensor;

namespace {

const fs::path kCase = fs::path(HP_SHARED_DIR) / "reference" / "gpt2-tiny";
constexpr double kLr = 1e-3;  // gpt2-tiny's case.json

struct CheckRun {
  int rc;
  std::string out;
};

CheckRun run_check(const fs::path& dir, const std::string& extra = "") {
  const std::string cmd = std::string(HP_BIN) + " check " + dir.string() + " " + extra + " 2>&1";
  CheckRun r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CheckCases : public ::testing::Test {
 protected:
  void SetUp() override {
    HP_REQUIRE_INPUT(fs::exists(kCase / "case.json"), kCase.string());
    dir_ = fs::temp_directory_path() /
           ("hp_check_cases_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* f : {"case.json", "weights.safetensors", "batch.safetensors"})
      fs::copy_file(kCase / f, dir_ / f);
    expected_ = hp::io::read_safetensors(kCase / "expected.safetensors");
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  // Writes the (possibly edited) expected results and runs hp check on the copy.
  CheckRun check(const std::string& extra = "") {
    hp::io::write_safetensors(dir_ / "expected.safetensors", expected_);
    return run_check(dir_, extra);
  }
  void add(const std::string& name, float delta, bool all = true) {
    auto v = expected_.at(name).to_f32_vector();
    for (size_t i = 0; i < (all ? v.size() : 1); ++i) v[i] += delta;
    expected_.at(name) = Tensor::from_f32(expected_.at(name).shape(), v);
  }

  fs::path dir_;
  hp::io::TensorMap expected_;
};

void expect_failure(const CheckRun& r, const std::string& want) {
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find(want), std::string::npos) << "no '" << want << "' in:\n" << r.out;
}

TEST_F(CheckCases, IntactCopyPassesAndCountsWhatItCompared) {
  CheckRun r = check();
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("{\"check\": \"loss\", \"compared\": 5,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("{\"check\": \"grad\", \"compared\": 28,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("{\"check\": \"final_mean_lr\", \"compared\": 28,"), std::string::npos)
      << r.out;
}

TEST_F(CheckCases, ExpectedFileMissing) {
  expect_failure(run_check(dir_), "does not exist");
}

TEST_F(CheckCases, OnlyLossesExpected) {
  for (auto it = expected_.begin(); it != expected_.end();)
    it = it->first == "loss" ? std::next(it) : expected_.erase(it);
  expect_failure(check(), "'grad/h.0.ln_1.weight' missing from the expected file");
}

TEST_F(CheckCases, OneTensorMissing) {
  expected_.erase("final/h.1.mlp.c_fc.bias");
  expect_failure(check(), "'final/h.1.mlp.c_fc.bias' missing");
}

TEST_F(CheckCases, NaNExpected) {
  add("grad/h.0.attn.c_proj.weight", std::nanf(""), false);
  expect_failure(check(), "'grad/h.0.attn.c_proj.weight' holds a non-finite expected value");
}

TEST_F(CheckCases, NaNExpectedLoss) {
  add("loss", std::nanf(""), false);
  expect_failure(check(), "'loss' holds a non-finite");
}

TEST_F(CheckCases, StepsZero) {
  expect_failure(check("--steps 0"), "--steps must be at least 1");
}

TEST_F(CheckCases, StepsOtherThanTheCase) {
  expect_failure(check("--steps 4"), "differs from the 5 steps");
}

TEST_F(CheckCases, NormFinalWeightsHalfAStepOff) {
  add("final/h.1.ln_2.weight", float(0.5 * kLr));
  expect_failure(check(), "check final_mean_lr: h.1.ln_2.weight: error");
}

TEST_F(CheckCases, OneElementHalfAStepOff) {
  add("final/h.0.attn.c_attn.weight", float(0.5 * kLr), false);
  expect_failure(check(), "check final_elem_lr: h.0.attn.c_attn.weight: error");
}

TEST_F(CheckCases, UnmatchedExpectedTensor) {
  expected_.emplace("grad/h.9.mlp.c_fc.weight", Tensor::from_f32({2}, {0.f, 0.f}));
  expect_failure(check(), "check grad: expected tensor 'grad/h.9.mlp.c_fc.weight' matches nothing");
}

TEST_F(CheckCases, WrongLossCount) {
  expected_.at("loss") = Tensor::from_f32({4}, {1.f, 1.f, 1.f, 1.f});
  expect_failure(check(), "'loss' is [4], the run's is [5]");
}

}  // namespace
