package domain

// Catalogue is the registry of every event type Vigil writes. It is built at
// package initialisation and only read afterwards.
var Catalogue = buildCatalogue()

func buildCatalogue() *Registry {
	r := NewRegistry()
	r.Register(1, SessionCreated{})
	r.Register(1, ChatMessage{})
	r.Register(1, TechnicianCreated{})
	return r
}

// SessionCreated: placeholder, replaced by the full catalogue.
type SessionCreated struct {
	PIN          string            `json:"pin"`
	Queue        string            `json:"queue"`
	CustomFields map[string]string `json:"custom_fields,omitempty" vigil:"sealed"`
}

func (SessionCreated) EventType() string { return "session.created" }

// ChatMessage: placeholder.
type ChatMessage struct {
	From string `json:"from"`
	Text string `json:"text" vigil:"sealed"`
}

func (ChatMessage) EventType() string { return "session.chat_message" }

// TechnicianCreated: placeholder.
type TechnicianCreated struct {
	GroupID string `json:"group_id"`
	Name    string `json:"name" vigil:"sealed"`
	Email   string `json:"email" vigil:"sealed"`
}

func (TechnicianCreated) EventType() string { return "technician.created" }
