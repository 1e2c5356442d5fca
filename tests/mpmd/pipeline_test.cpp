// The pipeline section and ppN presets: the issue's contract parses, every malformed field is an
// error naming the file, line and field, and blocks are balanced by dynamic programming when the
// stages are not listed.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "hp/core/error.hpp"
#include "hp/mpmd/balance.hpp"
#include "hp/mpmd/pipeline.hpp"

namespace hp::mpmd {
namespace {

std::string error_of(const std::string& yaml, int64_t world, int64_t blocks) {
  try {
    parse_pipeline_text(yaml, world, blocks, "s.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MpmdPipeline, TheContractParses) {
  PipelineSpec p = parse_pipeline_text(R"(
mesh: {dp: 1}
pipeline:
  schedule: 1f1b
  microbatches: 3
  stages:
    - blocks: "0"
      devices: 2
      strategy: tp2
    - blocks: "1-2"
      devices: 1
)",
                                       3, 3, "s.yaml");
  EXPECT_EQ(p.schedule, ScheduleKind::k1F1B);
  EXPECT_EQ(p.microbatches, 3);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.stages[0].blocks, (std::vector<BlockRange>{{0, 0}}));
  EXPECT_EQ(p.stages[1].blocks, (std::vector<BlockRange>{{1, 2}}));
  EXPECT_EQ(p.stages[0].strategy, "tp2");
  EXPECT_EQ(p.stages[1].first_rank, 2);
  EXPECT_FALSE(p.balanced);
  EXPECT_EQ(p.str(),
            "1f1b, 3 micro-batches: stage 0 blocks 0 on 2 devices (tp2) | stage 1 blocks 1-2 on "
            "1 device");
  EXPECT_EQ(p.chunk_graph().rank_of, (std::vector<int>{0, 1}));
}

TEST(MpmdPipeline, LoadsFromAFileAndNamesIt) {
  auto path = std::filesystem::temp_directory_path() / "mpmd_pipeline_test.yaml";
  {
    std::ofstream f(path);
    f << "presets: [dp]\npipeline:\n  schedule: gpipe\n  microbatches: 0\n";
  }
  try {
    load_pipeline(path, 2, 4);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ":4:17 (pipeline.microbatches)"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

TEST(MpmdPipeline, ChunksPlacedByHandFormTheChain) {
  PipelineSpec p = parse_pipeline_text(R"(
pipeline:
  schedule: interleaved
  microbatches: 5
  stages:
    - blocks: ["0-1", "4-5"]
      devices: 1
    - blocks: ["2-3", "6"]
      devices: 1
      strategy: {mesh: {tp: 1}}
)",
                                       2, 7);
  EXPECT_EQ(p.virtual_chunks, 2);
  EXPECT_EQ(p.chunk_graph().rank_of, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_TRUE(p.stages[1].strategy_rules.IsMap());
}

TEST(MpmdPipeline, AMeshAroundPpGivesEveryStageItsOtherAxes) {
  const auto stage_strategy = [](const std::string& mesh, const std::string& presets) {
    const PipelineSpec p = parse_pipeline_text(
        "mesh: " + mesh + "\npresets: " + presets + "\npipeline: {schedule: 1f1b}\n", 8, 4);
    EXPECT_EQ(p.stages.size(), 2u);
    return p.stages[1].strategy;
  };
  EXPECT_EQ(stage_strategy("{pp: 2, dp: 4}", "[dp]"), "dp4");
  EXPECT_EQ(stage_strategy("{pp: 2, dp: 2, tp: 2}", "[dp, tp, sp]"), "dp2xtp2+sp");
  EXPECT_EQ(stage_strategy("{pp: 2, fsdp: 4}", "[fsdp]"), "fsdp4");
  EXPECT_EQ(stage_strategy("{pp: 2, dp: 4}", "[]"), "");  // laid out by rules: not guessed
}

TEST(MpmdPipeline, ErrorsNameTheFileLineAndField) {
  const std::string head = "pipeline:\n  schedule: 1f1b\n  microbatches: 2\n  stages:\n";
  struct Case {
    std::string yaml, want;
  } cases[] = {
      {head + "    - {blocks: \"0-4\", devices: 1}\n",
       "s.yaml:5:16 (pipeline.stages[0].blocks): blocks '0-4' out of range: the model has 4 "
       "blocks (0-3)"},
      {head + "    - {blocks: \"0-2\", devices: 1}\n    - {blocks: \"2-3\", devices: 1}\n",
       "block 2 is in stage 0 (s.yaml:5:7 (pipeline.stages[0])) and in stage 1"},
      {head + "    - {blocks: \"0-1\", devices: 2}\n",
       "s.yaml:5:5 (pipeline.stages): blocks 2-3 belong to no stage"},
      {head + "    - {blocks: \"0-3\", devices: 1}\n",
       "s.yaml:5:5 (pipeline.stages): the stages' devices add up to 1, the world has 2 devices"},
      {head + "    - {blocks: \"3-1\", devices: 2}\n", "the range runs backwards"},
      {head + "    - {blocks: \"a\", devices: 2}\n",
       "expected a block \"3\" or an inclusive range"},
      {"pipeline: {schedule: zb-h2}\n",
       "s.yaml:1:22 (pipeline.schedule): unknown schedule 'zb-h2' (expected one of: gpipe, 1f1b, "
       "interleaved, zb-h1, zbv, auto)"},
      {"pipeline: {microbatches: 0}\n",
       "s.yaml:1:26 (pipeline.microbatches): microbatches must be >= 1, got 0"},
      {"pipeline: {schedule: 1f1b, virtual: 2}\n",
       "virtual applies to interleaved and zbv, not 1f1b"},
      {"pipeline: {micro_batches: 2}\n", "unknown key 'pipeline.micro_batches'"},
      {"pipeline: {schedule: interleaved, stages: [{blocks: \"0-3\", devices: 2}]}\n",
       "stage 0 lists 1 block ranges; interleaved with virtual 2 needs one per chunk"},
      {"mesh: {dp: 2}\n", "missing key 'pipeline'"},
      {"pipeline: {schedule: interleaved, virtual: 3}\n",
       "s.yaml:1:11 (pipeline): 2 stages of 3 chunks each need 6 chunks of at least one block, "
       "the model has 4 blocks: use fewer stages or a smaller virtual"},
  };
  for (const auto& c : cases) {
    std::string e = error_of(c.yaml, 2, 4);
    EXPECT_NE(e.find(c.want), std::string::npos) << "[" << c.yaml << "] -> " << e;
  }
  const std::string e = error_of("pipeline: {schedule: zbv}\n", 3, 4);  // a V of 6 chunks
  EXPECT_NE(e.find("3 stages of 2 chunks each need 6 chunks of at least one block, the model has 4 "
                   "blocks: use fewer stages"),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find("smaller virtual"), std::string::npos) << e;  // zbv's V has exactly 2
}

TEST(MpmdPipeline, WithoutStagesBlocksAreBalancedOverTheWorldOrThePpAxis) {
  PipelineSpec p = parse_pipeline_text("pipeline: {microbatches: 3}\n", 3, 5);
  ASSERT_EQ(p.stages.size(), 3u);
  EXPECT_TRUE(p.balanced);
  EXPECT_EQ(p.chunks().size(), 3u);
  EXPECT_EQ(p.stages[0].blocks[0].first, 0);
  EXPECT_EQ(p.stages[2].blocks[0].last, 4);
  PipelineSpec q = parse_pipeline_text("mesh: {pp: 2, dp: 2}\npipeline: {schedule: zbv}\n", 4, 8);
  ASSERT_EQ(q.stages.size(), 2u);
  EXPECT_EQ(q.stages[0].devices, 2);
  // A V: stage 0 holds the first and the last quarter.
  EXPECT_EQ(q.stages[0].blocks, (std::vector<BlockRange>{{0, 1}, {6, 7}}));
  EXPECT_EQ(q.chunk_graph().rank_of, (std::vector<int>{0, 1, 1, 0}));
}

TEST(MpmdPipeline, PpPresetsSplitTheOutermostAxis) {
  auto a = split_pp_preset("pp2xdp2", 4);
  EXPECT_EQ(a.stages, 2);
  EXPECT_EQ(a.devices_per_stage, 2);
  EXPECT_EQ(a.stage_preset, "dp2");
  EXPECT_EQ(split_pp_preset("pp2xtp2+sp", 4).stage_preset, "tp2+sp");
  EXPECT_EQ(split_pp_preset("pp4", 4).stage_preset, "");
  EXPECT_EQ(split_pp_preset("ppxtp2", 8).stages, 4);
  EXPECT_EQ(split_pp_preset("pp2xdpxtp2", 8).stage_preset, "dpxtp2");
  EXPECT_TRUE(is_pipeline_preset("pp2xdp2"));
  EXPECT_FALSE(is_pipeline_preset("dp2"));
  EXPECT_THROW(split_pp_preset("dp2xpp2", 4), Error);  // pp not outermost
  EXPECT_THROW(split_pp_preset("pp3", 4), Error);      // does not divide
  EXPECT_THROW(split_pp_preset("pp2", 4), Error);      // 2 devices per stage, no strategy
  EXPECT_THROW(split_pp_preset("pp2xdp4", 4), Error);  // sizes disagree
  PipelineSpec p = pipeline_from_preset("pp3", 3, 5, ScheduleKind::kGpipe, 3);
  EXPECT_EQ(p.stages.size(), 3u);
  EXPECT_EQ(p.stages[2].first_rank, 2);
}

TEST(MpmdBalance, MinimisesTheLargestStageWithExtrasAndSpeeds) {
  BalanceInput in;
  in.cost = {1, 1, 1, 1, 1};
  in.parts = 2;
  EXPECT_EQ(balance_blocks(in).max_cost, 3);
  in.last_cost = 2;  // the head: the last stage takes fewer blocks
  Balance b = balance_blocks(in);
  EXPECT_EQ(b.ranges, (std::vector<BlockRange>{{0, 2}, {3, 4}}));
  EXPECT_EQ(b.cost, (std::vector<double>{3, 4}));
  in.last_cost = 0;
  in.cost = {1, 1, 1, 1, 1, 1};
  in.speed = {2, 1};  // a stage with twice the devices takes twice the blocks
  b = balance_blocks(in);
  EXPECT_EQ(b.ranges, (std::vector<BlockRange>{{0, 3}, {4, 5}}));
  in.speed.clear();
  in.cost = {4, 1, 1, 1, 1, 4};
  in.parts = 3;
  EXPECT_EQ(balance_blocks(in).str(), "0 | 1-4 | 5 (cost 4, 4, 4; max 4)");
}

TEST(MpmdBalance, RespectsMemoryCapsOrSaysWhy) {
  BalanceInput in;
  in.cost = {1, 1, 1, 1};
  in.bytes = {1, 1, 1, 1};
  in.first_bytes = 2;  // embeddings
  in.parts = 2;
  in.memory_cap = {3, 10};
  Balance b = balance_blocks(in);
  EXPECT_EQ(b.ranges, (std::vector<BlockRange>{{0, 0}, {1, 3}}));
  EXPECT_EQ(b.bytes, (std::vector<double>{3, 3}));
  in.memory_cap = {2, 10};
  EXPECT_THROW(balance_blocks(in), Error);
  in.memory_cap.clear();
  in.parts = 5;
  EXPECT_THROW(balance_blocks(in), Error);  // 4 blocks for 5 stages
}

}  // namespace
}  // namespace hp::mpmd
