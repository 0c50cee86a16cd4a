package ledger_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	ledger "github.com/stanceledger/ledger"
)

func TestContributions(t *testing.T) {
	oppose := stance("msmt-report-2025-05")
	tests := []struct {
		name string
		e    *ledger.Event
		want []ledger.Contribution
	}{
		{
			name: "a report's findings go to its publisher, not to the accused",
			e:    report(),
			want: []ledger.Contribution{{Party: "msmt", Stance: ledger.Stance{Topic: "dprk-troops-in-russia", Alignment: ledger.AlignmentSupports, Act: ledger.ActAccuse}}},
		},
		{
			name: "a statement's stances go to its party, then to every co-signer",
			e: statement("s1", func(s *ledger.StatementIssued) {
				s.Stances = append(s.Stances, stance("msmt-legitimacy"))
				s.CoSigners = []string{"russia"}
			}),
			want: []ledger.Contribution{
				{Party: "dprk", Stance: oppose}, {Party: "dprk", Stance: stance("msmt-legitimacy")},
				{Party: "russia", Stance: oppose}, {Party: "russia", Stance: stance("msmt-legitimacy")},
			},
		},
		{
			name: "a co-signer listed twice, or equal to the party, contributes once",
			e:    statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"dprk", "russia", "russia"} }),
			want: []ledger.Contribution{{Party: "dprk", Stance: oppose}, {Party: "russia", Stance: oppose}},
		},
		{
			name: "a veto's votes go to each voter on the mandate, act VOTE",
			e: veto(func(m *ledger.MandateVetoed) {
				m.Votes = append(m.Votes, ledger.MemberVote{Party: "usa", Vote: ledger.VoteNo})
			}),
			want: []ledger.Contribution{
				{Party: "usa", Stance: ledger.Stance{Topic: "poe-mandate-renewal-2024", Alignment: ledger.AlignmentSupports, Act: ledger.ActVote}},
				{Party: "russia", Stance: ledger.Stance{Topic: "poe-mandate-renewal-2024", Alignment: ledger.AlignmentOpposes, Act: ledger.ActVote}},
				{Party: "china", Stance: ledger.Stance{Topic: "poe-mandate-renewal-2024", Alignment: ledger.AlignmentAbstains, Act: ledger.ActVote}},
				{Party: "japan", Stance: ledger.Stance{Topic: "poe-mandate-renewal-2024", Alignment: ledger.AlignmentSupports, Act: ledger.ActVote}},
			},
		},
		{
			name: "a voter listed twice contributes its first vote, once, in a long vote too",
			e: veto(func(m *ledger.MandateVetoed) {
				m.Votes = nil
				for i := range 40 {
					m.Votes = append(m.Votes, ledger.MemberVote{Party: fmt.Sprint("member-", i%39), Vote: ledger.Vote(1 + i%3)})
				}
			}),
			want: func() []ledger.Contribution {
				var out []ledger.Contribution
				for i := range 39 {
					out = append(out, ledger.Contribution{Party: fmt.Sprint("member-", i), Stance: ledger.Stance{
						Topic: "poe-mandate-renewal-2024", Alignment: ledger.Vote(1 + i%3).Alignment(), Act: ledger.ActVote,
					}})
				}
				return out
			}(),
		},
		{
			name: "a correction contributes nothing itself",
			e:    correction("c1", "s1", func(c *ledger.RecordCorrected) { c.ReplacementStances = []ledger.Stance{oppose} }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ledger.Contributions(tt.e)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Contributions =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestAppendContributions: the contributions are appended after what dst holds,
// which changes nothing of them (a veto's voters are its own, even when dst has
// another veto's).
func TestAppendContributions(t *testing.T) {
	for _, e := range []*ledger.Event{veto(), statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"russia"} })} {
		before := ledger.Contributions(veto())
		got := ledger.AppendContributions(slices.Clip(before), e)
		want := append(slices.Clone(before), ledger.Contributions(e)...)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("AppendContributions =\n%+v\nwant\n%+v", got, want)
		}
	}
}

// TestAttributeReplacement: a correction's replacement stances belong to the parties of
// the corrected record, co-signers included.
func TestAttributeReplacement(t *testing.T) {
	corrected := statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"russia"} })
	replacement := []ledger.Stance{stance("msmt-legitimacy")}
	want := []ledger.Contribution{{Party: "dprk", Stance: replacement[0]}, {Party: "russia", Stance: replacement[0]}}
	if got := ledger.Attribute(corrected, replacement); !reflect.DeepEqual(got, want) {
		t.Errorf("Attribute = %+v, want %+v", got, want)
	}
	if got := ledger.Attribute(corrected, nil); len(got) != 0 {
		t.Errorf("Attribute of no stances = %+v", got)
	}
}

// TestSpeakers: the parties a record speaks for, each once, whatever its stances; a
// veto speaks for its party alone (its voters contribute, but are not its speakers).
func TestSpeakers(t *testing.T) {
	for _, tt := range []struct {
		e    *ledger.Event
		want []string
	}{
		{statement("s1", func(s *ledger.StatementIssued) { s.CoSigners = []string{"dprk", "russia", "china", "russia"} }), []string{"dprk", "russia", "china"}},
		{statement("s2", func(s *ledger.StatementIssued) { s.Stances = nil }), []string{"dprk"}},
		{report(), []string{"msmt"}},
		{veto(), []string{"russia"}},
	} {
		if got := ledger.Speakers(tt.e); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Speakers(%s) = %v, want %v", tt.e.EventID, got, tt.want)
		}
	}
}

// TestVoteAlignment pins the vote → alignment rule of DESIGN.md §1.
func TestVoteAlignment(t *testing.T) {
	for v, want := range map[ledger.Vote]ledger.Alignment{
		ledger.VoteYes: ledger.AlignmentSupports, ledger.VoteNo: ledger.AlignmentOpposes,
		ledger.VoteAbstain: ledger.AlignmentAbstains, ledger.VoteUnspecified: ledger.AlignmentUnspecified,
	} {
		if got := v.Alignment(); got != want {
			t.Errorf("%v.Alignment() = %v, want %v", v, got, want)
		}
	}
}
