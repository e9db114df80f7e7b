import ParleyConformance
import Testing

/// The independent vectors (python-axolotl transcripts) must all replay byte for byte.
@Suite struct ConformanceVectorTests {
    @Test(arguments: [
        "pingpong_10_otk", "pingpong_10_no_otk", "alice_50_before_reply", "out_of_order_within_chain",
        "out_of_order_across_ratchets", "long_random_1000", "rejects_catalog_otk", "rejects_catalog_no_otk",
        "group_100", "group_late_join", "duplicates_after_last_draw",
    ])
    func vectorReplays(name: String) {
        let path = repositoryRoot.appendingPathComponent("TestVectors/protocol/\(name).json").path
        let outcomes = ConformanceRunner().run(file: path)
        #expect(outcomes.count == 1)
        for outcome in outcomes { #expect(outcome.passed, "\(outcome.line)") }
    }

    /// The shared version-4 vectors (PQXDH, current Sender Keys, the Kyber1024 KEM; an
    /// independent model of libsignal v0.91.0 without SPQR).
    @Test(arguments: [
        "pqxdh_pingpong_10_otk", "pqxdh_pingpong_10_no_otk", "pqxdh_out_of_order",
        "pqxdh_rejects_catalog_otk", "pqxdh_rejects_catalog_no_otk", "pqxdh_alice_20_before_reply", "sender_key_50",
        "sender_key_two_distributions",
    ])
    func version4VectorReplays(name: String) {
        let path = repositoryRoot.appendingPathComponent("TestVectors/protocol-v4/\(name).json").path
        let outcomes = ConformanceRunner().run(file: path)
        #expect(outcomes.count == 1)
        for outcome in outcomes { #expect(outcome.passed, "\(outcome.line)") }
    }

    /// Parley's own scenarios (TestVectors/scenarios/): attacks the shared set does not cover.
    @Test(arguments: ["base_key_reencoded_no_otk"])
    func scenarioReplays(name: String) {
        let path = repositoryRoot.appendingPathComponent("TestVectors/scenarios/\(name).json").path
        let outcomes = ConformanceRunner().run(file: path)
        #expect(outcomes.count == 1)
        for outcome in outcomes { #expect(outcome.passed, "\(outcome.line)") }
    }

    @Test func unknownKindFails() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-vec-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(#"{"kind":"mystery","name":"m"}"#.utf8).write(to: dir.appendingPathComponent("m.json"))
        try Data("[]".utf8).write(to: dir.appendingPathComponent("index.json"))
        let outcomes = ConformanceRunner().run(paths: [dir.path])
        #expect(outcomes.count == 1)
        #expect(outcomes.first?.line == #"FAIL m: unknown kind "mystery""#)
        #expect(ConformanceRunner.summary(outcomes) == "0 passed, 1 failed")
    }
}

import Foundation
